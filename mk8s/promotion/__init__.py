"""Evidence and promotion: run evidence (evidence.py), the pure gate (gate.py), `invoke
promote` (promote.py) and the HTML report (report.py)."""
