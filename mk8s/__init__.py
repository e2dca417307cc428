"""mk8s: production MicroK8s on Proxmox VE, from inventory to promoted environments."""

__version__ = "0.1.0"
