"""Terminal output: one rich Console for the whole toolkit, and the plan summary table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # every task imports this module: it must not load the renderers
    from mk8s.render.plan import Changes, Plan

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def plan_tables(plan: Plan) -> list[Table]:
    from mk8s.render.plan import summary

    s = summary(plan.env)
    nodes = Table(title=f"{s['environment']} ({s['tier']}): nodes", title_justify="left")
    for col in ("name", "vmid", "ip", "pve_node", "cores", "memory", "disk"):
        nodes.add_column(col)
    for n in s["nodes"]:
        nodes.add_row(
            n["name"],
            str(n["vmid"]),
            n["ip"],
            n["pve_node"],
            str(n["cores"]),
            f"{n['memory_gib']} GiB",
            f"{n['disk_gib']} GiB",
        )
    platform = Table(title="platform", title_justify="left", show_header=False)
    platform.add_column("what")
    platform.add_column("value")
    limit = s["ingress"]["rate_limit"]
    backup = s["backup"]
    rows = [
        ("MicroK8s", f"{s['microk8s']['channel']}, HA {'on' if s['ha'] else 'off'}"),
        ("add-ons", ", ".join(s["microk8s"]["addons"])),
        ("API address", f"{s['api_address']}:16443"),
        ("MetalLB range", s["metallb_range"]),
        ("ingress", f"{s['ingress']['controller']} for {s['ingress']['domain']}"),
        (
            "rate limit",
            "off"
            if limit is None
            else f"{limit['rps']} r/s, burst {limit['burst']} per IP, {limit['status_code']}",
        ),
        ("TLS issuer", f"{s['tls']['issuer']} ({s['tls']['challenge']})"),
        ("storage class", s["storage"]["default_class"]),
        (
            "backup",
            "none"
            if backup is None
            else f"{backup['tool']} -> {backup['bucket']} "
            + ", ".join(f"{k} {v}d" for k, v in backup["schedules"].items()),
        ),
        ("promoted after", s["promotion_after"] or "(first environment)"),
    ]
    for what, value in rows:
        platform.add_row(what, value)
    return [nodes, platform]


def print_changes(changes: Changes, facts: list[str], out: str) -> None:
    for line in facts:
        console.print(f"  [yellow]changed[/yellow] {line}")
    if changes.empty:
        console.print(f"{out}: up to date, nothing changed")
        return
    for label, paths in (("+", changes.added), ("~", changes.changed), ("-", changes.removed)):
        for p in paths:
            console.print(f"  {label} {out}/{p}")
    console.print(
        f"{out}: {len(changes.added)} added, {len(changes.changed)} changed, "
        f"{len(changes.removed)} removed"
    )
