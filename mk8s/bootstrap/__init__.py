"""Bootstrap (PRD 1.2-1.5): MicroK8s on every node and HA formation. formation.py holds the
pure decisions over node facts; forming.py runs the joins they call for; flow.py reads the facts
through mk8s.edges.microk8s over SSH and runs the other steps."""
