"""Provision (PRD 1.1): Proxmox preflight (preflight.py, pure), Terraform plan/apply and
the day-2 VM actions (flow.py), VM verification (verify.py, pure), tables (view.py)."""
