"""Day-2 operations: the lock, plan and journal every mutating task shares; windows; certs.

`lock` (one operation per environment), `plan` (typed, numbered, shown before anything runs),
`journal` + `runner` (RUN.json, resume), `wait` (named waits), `window` (maintenance windows),
`certs` (pure policy) beside `certs_flow` (reading them over SSH), `snapshots` (which VM sets
Proxmox can snapshot or roll back). docs/day2.md describes the conventions.
"""
