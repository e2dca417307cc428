"""The contract: the inventory model (model.py), its cross-field rules (rules.py), loading
YAML into a validated Environment (load.py), `*_env` secret references (secrets.py), cron
schedules (cron.py) and the generated field reference (reference.py). Core: no I/O but reading
the inventory and secrets files; imports no edge and no capability."""
