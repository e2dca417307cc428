"""Rich tables for provision: preflight verdicts and the per-node Terraform plan summary."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from mk8s.edges.terraform import Change, pending, summarize
from mk8s.provision.preflight import Check

STYLE = {"create": "green", "update": "yellow", "replace": "red", "delete": "red"}


def checks_table(checks: Sequence[Check]) -> Table:
    table = Table(title="preflight", title_justify="left")
    for col in ("check", "result", "detail", "fix"):
        table.add_column(col)
    for c in checks:
        table.add_row(
            c.name,
            "[green]pass[/green]" if c.ok else "[red]FAIL[/red]",
            c.detail,
            "" if c.ok else c.hint,
        )
    return table


def plan_table(chs: Sequence[Change]) -> Table:
    todo = summarize(pending(chs))
    table = Table(title=f"terraform plan: {len(todo)} node(s) change", title_justify="left")
    for col in ("node", "vm", "user-data"):
        table.add_column(col)
    for node, parts in sorted(summarize(chs).items()):
        cells = []
        for part in ("vm", "user-data"):
            action = todo.get(node, {}).get(part, parts.get(part, "-"))
            style = STYLE.get(action)
            cells.append(f"[{style}]{action}[/{style}]" if style else action)
        table.add_row(node, *cells)
    return table
