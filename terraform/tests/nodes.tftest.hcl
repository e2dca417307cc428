# `terraform test` with a mocked bpg/proxmox provider: no Proxmox needed. Run by
# tests/provision/test_terraform_module.py once per rendered environment (dev, stage, prod):
#   terraform test -var-file=<build/ENV/terraform/terraform.tfvars.json> -var=template_vmid=9000
# Every assertion compares the planned resources with the rendered variables, so the same file
# checks each environment; the Python test checks the variables against the inventory.

mock_provider "proxmox" {
  # The provider validates file ids (datastore:content/name); a random mock id would not pass.
  mock_resource "proxmox_virtual_environment_file" {
    defaults = {
      id = "local:snippets/mock-user-data.yaml"
    }
  }
}

run "one_vm_per_node" {
  command = apply

  assert {
    condition     = length(proxmox_virtual_environment_vm.node) == 3 && length(var.nodes) == 3
    error_message = "expected exactly 3 VMs, one per inventory node"
  }

  assert {
    condition = alltrue([for k, n in var.nodes :
      proxmox_virtual_environment_vm.node[k].name == n.name &&
      proxmox_virtual_environment_vm.node[k].vm_id == n.vmid &&
      proxmox_virtual_environment_vm.node[k].node_name == n.pve_node
    ])
    error_message = "VM name, vmid and PVE node must come from the inventory"
  }

  assert {
    condition = alltrue([for k, n in var.nodes :
      proxmox_virtual_environment_vm.node[k].cpu[0].cores == n.cores &&
      proxmox_virtual_environment_vm.node[k].memory[0].dedicated == n.memory_mib &&
      proxmox_virtual_environment_vm.node[k].disk[0].size == n.disk_gib &&
      proxmox_virtual_environment_vm.node[k].disk[0].datastore_id == var.datastore
    ])
    error_message = "cores, memory and disk must match the inventory size"
  }

  assert {
    condition = alltrue([for k, n in var.nodes :
      proxmox_virtual_environment_vm.node[k].initialization[0].ip_config[0].ipv4[0].address == "${n.ip}/${n.cidr_prefix}" &&
      proxmox_virtual_environment_vm.node[k].initialization[0].ip_config[0].ipv4[0].gateway == n.gateway &&
      proxmox_virtual_environment_vm.node[k].initialization[0].dns[0].servers == tolist(n.dns_servers)
    ])
    error_message = "static IP, gateway and DNS must come from the inventory"
  }

  assert {
    condition = alltrue([for k, n in var.nodes :
      proxmox_virtual_environment_vm.node[k].network_device[0].bridge == n.bridge &&
      proxmox_virtual_environment_vm.node[k].network_device[0].vlan_id == n.vlan &&
      proxmox_virtual_environment_vm.node[k].network_device[0].model == "virtio"
    ])
    error_message = "NIC must be virtio on the inventory bridge and VLAN"
  }

  assert {
    condition = alltrue([for k, n in var.nodes :
      contains(proxmox_virtual_environment_vm.node[k].tags, "mk8s") &&
      contains(proxmox_virtual_environment_vm.node[k].tags, "env-${var.environment}")
    ])
    error_message = "every VM is tagged mk8s and env-<name>"
  }

  assert {
    condition = alltrue([for k, n in var.nodes :
      proxmox_virtual_environment_vm.node[k].agent[0].enabled &&
      proxmox_virtual_environment_vm.node[k].on_boot &&
      proxmox_virtual_environment_vm.node[k].clone[0].vm_id == tonumber(var.template_vmid) &&
      proxmox_virtual_environment_vm.node[k].clone[0].full
    ])
    error_message = "full clone of the template, guest agent on, start on boot"
  }

  assert {
    condition = alltrue([for k, n in var.nodes :
      proxmox_virtual_environment_file.user_data[k].content_type == "snippets" &&
      proxmox_virtual_environment_file.user_data[k].datastore_id == var.snippets_datastore &&
      proxmox_virtual_environment_file.user_data[k].node_name == n.pve_node &&
      proxmox_virtual_environment_file.user_data[k].source_raw[0].data == n.user_data &&
      proxmox_virtual_environment_vm.node[k].initialization[0].user_data_file_id == proxmox_virtual_environment_file.user_data[k].id
    ])
    error_message = "one user-data snippet per node, on its PVE node, used by its VM"
  }

  assert {
    condition     = length(distinct([for f in proxmox_virtual_environment_file.user_data : f.source_raw[0].file_name])) == 3
    error_message = "snippet file names must be distinct per node"
  }

  assert {
    condition     = length(output.nodes) == 3 && alltrue([for k, n in var.nodes : output.nodes[k].ip == n.ip && output.nodes[k].vmid == n.vmid])
    error_message = "output nodes is keyed by node name"
  }
}

run "rejects_duplicate_vmids" {
  command = plan

  # Literal values: OpenTofu allows no function calls in a test's variables block.
  variables {
    nodes = {
      a = {
        name        = "a", vmid = 1101, ip = "10.0.0.11", cidr_prefix = 24, gateway = "10.0.0.1",
        dns_servers = ["10.0.0.1"], pve_node = "pve1", cores = 4, memory_mib = 16384,
        disk_gib    = 100, bridge = "vmbr0", vlan = 110, mtu = 1500, tags = ["mk8s"],
        user_data   = "#cloud-config\n"
      }
      b = {
        name        = "b", vmid = 1101, ip = "10.0.0.12", cidr_prefix = 24, gateway = "10.0.0.1",
        dns_servers = ["10.0.0.1"], pve_node = "pve2", cores = 4, memory_mib = 16384,
        disk_gib    = 100, bridge = "vmbr0", vlan = 110, mtu = 1500, tags = ["mk8s"],
        user_data   = "#cloud-config\n"
      }
    }
  }

  expect_failures = [var.nodes]
}
