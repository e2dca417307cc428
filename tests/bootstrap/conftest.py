"""Fixtures for the bootstrap tests: real sshd per node (tests.support.sshd)."""

from tests.support.sshd import sshd_factory

__all__ = ["sshd_factory"]
