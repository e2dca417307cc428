"""Renderers: pure functions Environment -> artifacts under build/ENV/. One module per consumer."""
