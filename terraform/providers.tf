# The provider takes everything secret or site-specific from the environment, set by mk8s:
# PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN ("user@realm!id=secret"), PROXMOX_VE_INSECURE,
# and for the snippet upload (bpg uploads snippets over SSH) PROXMOX_VE_SSH_USERNAME plus
# PROXMOX_VE_SSH_PRIVATE_KEY or an ssh-agent. The token never appears in variables or state.
provider "proxmox" {
  ssh {
    # Where to reach each PVE node over SSH when its API-reported address is not the right one.
    dynamic "node" {
      for_each = var.pve_ssh_nodes
      content {
        name    = node.key
        address = node.value.address
        port    = node.value.port
      }
    }
  }
}
