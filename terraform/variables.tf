# Inputs. mk8s renders all but template_vmid/template_node into build/ENV/terraform/terraform.tfvars.json
# (mk8s/render/terraform.py); template_vmid/template_node are resolved from the inventory's
# template name through the Proxmox API at provision time and passed with -var.

variable "environment" {
  description = "Environment name (dev, stage, prod, ...); used in tags and snippet names."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.environment))
    error_message = "environment must be an RFC 1123 label (lowercase letters, digits, '-')."
  }
}

variable "template" {
  description = "Template as named in the inventory (name or vmid); informational, see template_vmid."
  type        = string
}

variable "template_vmid" {
  description = "VMID of the cloud-init template to full-clone (resolved by mk8s from `template`)."
  type        = number

  validation {
    condition     = var.template_vmid >= 100 && floor(var.template_vmid) == var.template_vmid
    error_message = "template_vmid must be an integer VMID >= 100."
  }
}

variable "template_node" {
  description = "PVE node holding the template; null clones from each VM's own pve_node."
  type        = string
  default     = null
}

variable "datastore" {
  description = "Datastore for the VM disks and the cloud-init drive."
  type        = string

  validation {
    condition     = length(var.datastore) > 0
    error_message = "datastore must not be empty."
  }
}

variable "snippets_datastore" {
  description = "Datastore (with the `snippets` content type) that holds the per-node user-data."
  type        = string

  validation {
    condition     = length(var.snippets_datastore) > 0
    error_message = "snippets_datastore must not be empty."
  }
}

variable "ssh_user" {
  description = "Login user created by cloud-init (also inside user_data); exported for later steps."
  type        = string
}

variable "ssh_authorized_keys" {
  description = "OpenSSH public keys of the operators (also inside user_data)."
  type        = list(string)

  validation {
    condition     = length(var.ssh_authorized_keys) > 0
    error_message = "at least one SSH public key is needed to reach the nodes."
  }
}

variable "disk_interface" {
  description = "Bus/slot of the template's boot disk, resized to disk_gib (cloud images use scsi0)."
  type        = string
  default     = "scsi0"

  validation {
    condition     = can(regex("^(scsi|virtio|sata)[0-9]+$", var.disk_interface))
    error_message = "disk_interface must look like scsi0, virtio0 or sata0."
  }
}

variable "pve_ssh_nodes" {
  description = "Optional SSH address per PVE node for the snippet upload: name => {address, port}."
  type = map(object({
    address = string
    port    = optional(number, 22)
  }))
  default = {}
}

variable "nodes" {
  description = "The cluster nodes, keyed by node name so adding one never renumbers the others."
  type = map(object({
    name        = string
    vmid        = number
    ip          = string
    cidr_prefix = number
    gateway     = string
    dns_servers = list(string)
    pve_node    = string
    cores       = number
    memory_mib  = number
    disk_gib    = number
    bridge      = string
    vlan        = optional(number)
    mtu         = optional(number, 1500)
    tags        = list(string)
    user_data   = string
  }))

  validation {
    condition     = length(var.nodes) > 0
    error_message = "nodes must hold at least one node."
  }

  validation {
    condition     = alltrue([for k, n in var.nodes : k == n.name])
    error_message = "each key of nodes must equal that node's name."
  }

  validation {
    condition     = length(distinct([for n in var.nodes : n.vmid])) == length(var.nodes)
    error_message = "node vmids must be unique."
  }

  validation {
    condition     = length(distinct([for n in var.nodes : n.ip])) == length(var.nodes)
    error_message = "node IPs must be unique."
  }

  validation {
    condition     = alltrue([for n in var.nodes : can(cidrhost("${n.ip}/${n.cidr_prefix}", 0))])
    error_message = "every node needs an IPv4 ip and a cidr_prefix between 0 and 32."
  }

  validation {
    condition     = alltrue([for n in var.nodes : n.cores >= 1 && n.memory_mib >= 1024 && n.disk_gib >= 10])
    error_message = "each node needs >= 1 core, >= 1024 MiB memory and >= 10 GiB disk."
  }

  validation {
    condition     = alltrue([for n in var.nodes : n.vlan == null ? true : (n.vlan >= 1 && n.vlan <= 4094)])
    error_message = "vlan must be between 1 and 4094 (or null for untagged)."
  }

  validation {
    condition     = alltrue([for n in var.nodes : startswith(n.user_data, "#cloud-config")])
    error_message = "user_data must be cloud-config (start with #cloud-config)."
  }
}
