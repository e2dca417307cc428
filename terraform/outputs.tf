output "nodes" {
  description = "Node name => {vmid, ip, pve_node}: what later steps (bootstrap, verify) connect to."
  value = {
    for name, vm in proxmox_virtual_environment_vm.node : name => {
      vmid     = vm.vm_id
      ip       = var.nodes[name].ip
      pve_node = vm.node_name
    }
  }
}

output "ssh_user" {
  description = "User cloud-init creates on every node."
  value       = var.ssh_user
}

output "user_data_file_ids" {
  description = "Node name => volume id of its cloud-init user-data snippet."
  value       = { for name, f in proxmox_virtual_environment_file.user_data : name => f.id }
}
