"""Renderers: pure functions Environment -> Plan -> artifacts under build/ENV/ (plan.py,
artifact.py), one module per consumer (terraform, cloudinit, launchconfig, manifests,
ratelimit); build.py writes a plan into build/ENV/. Core: imports no edge and no capability."""
