"""Bootstrap (PRD 1.2-1.5): MicroK8s on every node and HA formation. formation.py holds the
pure decisions over node facts; flow.py reads the facts over SSH and runs the actions."""
