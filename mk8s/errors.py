"""Errors the user can fix. Tasks turn them into one line per problem and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a refused action: printed as lines, never as a traceback."""

    exit_code = 2

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines: tuple[str, ...] = lines


class InventoryError(UserError):
    """The inventory file is unreadable, malformed or breaks a rule."""


class OperationFailedError(UserError):
    """An outside system (Proxmox, Terraform, a node, the cluster) did not reach the wanted state."""

    exit_code = 1
