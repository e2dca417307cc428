"""Edges: one module per outside system, shared by every capability and importing none.

proxmox (proxmoxer), terraform (subprocess), tools (terraform/provider mirror), kustomize
(subprocess), ssh (Fabric/paramiko with pinned host keys), kube (the kubernetes client). An edge
reads facts and performs operations; what to do is decided by the capabilities."""
