"""Deploy (PRD 1.3-2.x): the platform manifests applied server-side. decide.py is the pure
plan (create/update/prune/keep); flow.py reads the live objects and applies, prunes, waits."""
