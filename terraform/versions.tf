# Pins: Terraform >= 1.7 (mock_provider in `terraform test`) or OpenTofu >= 1.7, and the exact
# bpg/proxmox version that `invoke tools` builds into the offline filesystem mirror.
terraform {
  required_version = ">= 1.7.0"

  required_providers {
    proxmox = {
      source  = "bpg/proxmox"
      version = "0.80.0"
    }
  }
}
