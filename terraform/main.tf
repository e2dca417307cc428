# One VM per node: a full clone of the cloud-init template on the node's pve_node, sized from
# the inventory, with a static address and a per-node user-data snippet.

locals {
  # Stable snippet names: changing one node's user-data never touches another node's file.
  snippet_names = { for name, n in var.nodes : name => "mk8s-${var.environment}-${name}-user-data.yaml" }
}

resource "proxmox_virtual_environment_file" "user_data" {
  for_each = var.nodes

  content_type = "snippets"
  datastore_id = var.snippets_datastore
  node_name    = each.value.pve_node

  source_raw {
    data      = each.value.user_data
    file_name = local.snippet_names[each.key]
  }
}

resource "proxmox_virtual_environment_vm" "node" {
  for_each = var.nodes

  name        = each.value.name
  description = "mk8s ${var.environment} node ${each.value.name}; managed by Terraform (mk8s provision)"
  node_name   = each.value.pve_node
  vm_id       = each.value.vmid
  tags        = sort(each.value.tags)
  on_boot     = true
  started     = true
  # Destroy happens only through `invoke destroy` after confirmation; do not wait for a guest
  # shutdown that may never come.
  stop_on_destroy = true

  clone {
    vm_id     = var.template_vmid
    node_name = coalesce(var.template_node, each.value.pve_node)
    full      = true
    # One attempt: mk8s retries lock timeouts itself, after re-planning (and re-checking) the
    # plan; the provider's own retry would also repeat hard failures, 10 s apart.
    retries = 1
  }

  agent {
    enabled = true
  }

  cpu {
    cores = each.value.cores
    type  = "x86-64-v2-AES"
  }

  memory {
    dedicated = each.value.memory_mib
  }

  disk {
    datastore_id = var.datastore
    interface    = var.disk_interface
    size         = each.value.disk_gib
    discard      = "on"
  }

  network_device {
    model   = "virtio"
    bridge  = each.value.bridge
    vlan_id = each.value.vlan
    mtu     = each.value.mtu
  }

  initialization {
    datastore_id = var.datastore

    ip_config {
      ipv4 {
        address = "${each.value.ip}/${each.value.cidr_prefix}"
        gateway = each.value.gateway
      }
    }

    dns {
      servers = each.value.dns_servers
    }

    user_data_file_id = proxmox_virtual_environment_file.user_data[each.key].id
  }

  lifecycle {
    # A new template or new cloud-init content must never replace (wipe) a running node:
    # cloud-init runs once at first boot anyway. Re-applying them is an explicit
    # `invoke provision --allow-replace` with `-replace`, see docs/provision.md.
    ignore_changes = [clone, initialization]
  }
}
