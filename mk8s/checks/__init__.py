"""Checks that judge a live endpoint; each returns a verdict and never raises for a bad result."""
