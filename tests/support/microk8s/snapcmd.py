"""`snap` as the model's nodes answer it: list, info, install, refresh (channel, hold), revert,
remove.

SD = canonical/snapd@bee548f (CLI in cmd/snapd/cli/), MK = canonical/microk8s@1.33. Over SSH
without a terminal snapd prints no Unicode (SD color.go canUnicode): `canonical**`, `^`, `--`.

Per node: channel, revision, version, held, and the revision before the last refresh (what
`snap revert` goes back to). The store is a table the test sets, channel -> (revision, version).
A refresh moves the node to the channel's revision, the configure hook restarts kubelite
(MK snap/hooks/configure ends in `snapctl restart microk8s.daemon-kubelite`), so the node is
not ready for `restart_s`. Faults: `refresh_fails` (configure hook error text: snapd undoes the
change, the old revision stays), `unhealthy_after_refresh` (lands, kubelite then stays down:
custom flags the new minor dropped, microk8s#2771), `refresh_conflict` (exit 10).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from tests.support.microk8s import model
from tests.support.microk8s.model import State

PUBLISHER = "canonical**"  # SD color.go shortPublisher: verified badge `**` without Unicode
RISKS = ("stable", "candidate", "beta", "edge")


class SnapExitError(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def out(*lines: str) -> None:
    for line in lines:
        print(line, flush=True)


def err(*lines: str) -> None:
    for line in lines:
        print(line, file=sys.stderr, flush=True)


def tabulate(rows: Sequence[Sequence[str]], minwidth: int, padding: int) -> list[str]:
    """Go text/tabwriter as snapd uses it: every cell but a line's last is padded to its
    column's widest cell + padding (at least minwidth); the last cell is printed as is."""
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell) + padding, minwidth)
    return ["".join(c.ljust(widths[i]) for i, c in enumerate(r[:-1])) + r[-1] for r in rows]


def release(state: State, channel: str) -> dict[str, str] | None:
    """The store's release for a channel; a closed risk follows the open one above it in its
    track (SD cmd_info.go addClosedChannel marks it ^)."""
    store: dict[str, dict[str, str]] = state["store"]
    track, _, risk = channel.partition("/")
    if risk not in RISKS:
        return store.get(channel)
    for r in reversed(RISKS[: RISKS.index(risk) + 1]):
        if (rel := store.get(f"{track}/{r}")) is not None:
            return rel
    return None


def full(channel: str) -> str:
    """SD snap/channel/channel.go Full: `1.33` -> `1.33/stable`, `stable` -> `latest/stable`."""
    if "/" in channel:
        return channel
    return f"latest/{channel}" if channel in RISKS else f"{channel}/stable"


def cmd_list(state: State, node: dict[str, Any]) -> None:
    # SD cmd_list.go Execute; `error: no matching snaps installed` exit 1 (ErrNoMatchingSnaps).
    if not node["installed"]:
        err("error: no matching snaps installed")
        raise SnapExitError(1)
    notes = "classic,held" if node["held"] else "classic"  # SD notes.go Notes.String
    rows = [
        ["Name", "Version", "Rev", "Tracking", "Publisher", "Notes"],
        ["microk8s", node["version"], node["revision"], node["channel"], PUBLISHER, notes],
    ]
    out(*tabulate(rows, 5, 2))  # SD cmd_list.go tabWriter: minwidth 5, padding 2


def track_order(tracks: set[str]) -> list[str]:
    numeric = sorted((t for t in tracks if t != "latest"), key=_track_key, reverse=True)
    return (["latest"] if "latest" in tracks else []) + numeric


def _track_key(track: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in track.split("."))


def cmd_info(state: State, node: dict[str, Any]) -> None:
    # SD cmd_info.go Execute: only the fields mk8s reads are printed (name, summary, publisher,
    # tracking, hold, channels, installed); tabwriter minwidth 2 padding 1.
    head = [["name:", "microk8s"], ["summary:", "Kubernetes for workstations and appliances"]]
    head.append(["publisher:", "Canonical**"])
    out(*tabulate(head, 2, 1))
    local = []
    if node["installed"]:
        local.append(["tracking:", node["channel"]])
        if node["held"]:  # SD maybePrintRefreshInfo: a hold over 100 years prints `forever`
            local.append(["hold:", "forever"])
        out(*tabulate(local, 2, 1))
    out("channels:")
    rows: list[list[str]] = []
    store = state["store"]
    for track in track_order({c.partition("/")[0] for c in store}):
        above = False
        for risk in RISKS:
            name = f"{track}/{risk}"
            if (rel := store.get(name)) is not None:
                rows.append([f"  {name}:", rel["version"], rel.get("released", "2026-01-01")])
                rows[-1] += [f"({rel['revision']})", "180MB", "classic"]
                above = True
            else:  # SD addClosedChannel: ^ under an open risk, -- when none is open above
                rows.append([f"  {name}:", "^" if above else "--", "", "", "", ""])
    if node["installed"]:
        rows.append(["installed:", node["version"], "", f"({node['revision']})", "180MB"])
        rows[-1].append("classic")
    out(*tabulate(rows, 2, 1))


def cmd_refresh(state: State, name: str, argv: list[str]) -> None:
    node = state["nodes"][name]
    if argv[:1] == ["--hold"] and "microk8s" in argv:
        node["held"] = True  # SD cmd_snap_op.go holdRefreshes
        out('General refreshes of "microk8s" held indefinitely')
        return
    if argv[:1] == ["--unhold"] and "microk8s" in argv:
        node["held"] = False
        out('Removed general refresh hold of "microk8s"')
        return
    if "microk8s" not in argv:
        err(f"model: snap refresh {' '.join(argv)} is not modelled")
        raise SnapExitError(2)
    if not node["installed"]:
        err('error: snap "microk8s" is not installed')  # SD snap/errors.go NotInstalledError
        raise SnapExitError(1)
    arg = next((a for a in argv if a.startswith("--channel=")), "")
    channel = full(arg.split("=", 1)[1]) if arg else node["channel"]
    refresh(state, name, channel)


def refresh(state: State, name: str, channel: str) -> None:
    """SD cmd_snap_op.go refreshOne and showDoneSnap; a hold does not block a refresh that
    names the snap and stays afterwards (target.go filterHeldSnaps, autorefresh_gating.go
    resetGatingForRefreshed)."""
    node = state["nodes"][name]
    faults = node["faults"]
    if faults.get("refresh_conflict"):  # SD conflict.go ChangeConflictError; retryable: 10
        err('error: snap "microk8s" has "auto-refresh" change in progress')
        raise SnapExitError(10)
    rel = release(state, channel)
    if rel is None:  # SD error.go: the channel has nothing for this snap
        err(f'error: snap "microk8s" is not available on {channel}')
        raise SnapExitError(1)
    if rel["revision"] == node["revision"] and channel == node["channel"]:
        err('snap "microk8s" has no updates available')  # SD error.go, not an error: exit 0
        return
    if reason := faults.get("refresh_fails"):
        # SD overlord/state/change.go changeError + hookstate/hookmgr.go `run hook %q: %v`;
        # the change is undone (overlord/snapstate/handlers.go undoLinkSnap): nothing moved.
        model.event(name, "refresh failed", channel=channel, revision=rel["revision"])
        err(
            "error: cannot perform the following tasks:",
            f'- Run configure hook of "microk8s" snap if present (run hook "configure": {reason})',
        )
        raise SnapExitError(1)
    node["previous"] = {"revision": node["revision"], "version": node["version"]}
    node.update(channel=channel, revision=rel["revision"], version=rel["version"])
    model.event(name, "refreshed", channel=channel, revision=rel["revision"])
    restart_kubelite(state, name)
    if faults.get("unhealthy_after_refresh"):
        node["running"] = False
        node["kubelite_broken"] = True
        model.event(name, "kubelite failing on new revision", revision=rel["revision"])
    risk = channel.removeprefix("latest/")  # SD showDone: ` (CHANNEL)` unless it is stable
    shown = "" if risk == "stable" else f" ({risk})"
    out(f"microk8s{shown} {rel['version']} from Canonical** refreshed")


def restart_kubelite(state: State, name: str) -> None:
    """`snapctl restart microk8s.daemon-kubelite`: the node is not ready for restart_s."""
    state["nodes"][name]["restart_until"] = time.time() + float(state["restart_s"])
    model.event(name, "restart kubelite")


def cmd_revert(state: State, name: str) -> None:
    """SD cmd_snap_op.go cmdRevert + showDone `%s reverted to %s` (name, version). On a voter
    this rewinds its datastore (shared/reference/microk8s-behaviour.md): logged as an event."""
    node = state["nodes"][name]
    previous = node.get("previous")
    if previous is None:
        err('error: no revision to revert to for "microk8s"')
        raise SnapExitError(1)
    node.update(previous)
    node["previous"] = None
    node["running"] = True
    node.pop("kubelite_broken", None)
    model.event(name, "reverted", revision=previous["revision"])
    restart_kubelite(state, name)
    out(f"microk8s reverted to {previous['version']}")


def cmd_remove(state: State, name: str, purge: bool) -> None:
    """SD cmd_snap_op.go showRemovedSnaps: `microk8s removed`, with `(snap data snapshot saved)`
    unless --purge. The data goes (certificates, the local dqlite), but the other members still
    list this node and its Node object stays until `microk8s remove-node` (microk8s#2212)."""
    node = state["nodes"][name]
    if not node["installed"]:
        err('snap "microk8s" is not installed')  # SD: remove ignores NotInstalled, exit 0
        return
    node.update(installed=False, running=False, held=False, channel="", previous=None)
    node.update(revision="", version="", worker=False, join_lock=False, tokens={})
    certs_dir = model.root() / name / "certs"
    for f in certs_dir.glob("*"):
        if f.name != "csr.conf.template":
            f.unlink()
    model.event(name, "removed", purge=purge)
    out("microk8s removed" if purge else "microk8s removed (snap data snapshot saved)")


def cmd_snap(name: str, argv: list[str], install: Any) -> None:
    with model.locked() as state:
        node = state["nodes"][name]
        if argv[:2] == ["list", "microk8s"]:
            return cmd_list(state, node)
        if argv[:2] == ["info", "microk8s"]:
            return cmd_info(state, node)
        if argv[:1] == ["refresh"]:
            return cmd_refresh(state, name, argv[1:])
        if argv[:2] == ["revert", "microk8s"]:
            return cmd_revert(state, name)
        if argv[:2] == ["remove", "microk8s"]:
            return cmd_remove(state, name, "--purge" in argv)
        if argv[:1] == ["install"] and "microk8s" in argv:
            channel = next((a.split("=", 1)[1] for a in argv if a.startswith("--channel=")), "")
            if node["installed"]:
                out("snap \"microk8s\" is already installed, see 'snap help refresh'")
                return None
            install(state, name, full(channel or "latest/stable"))
            out(f"microk8s ({channel}) {node['version']} from Canonical** installed")
            return None
    err(f"model: snap {' '.join(argv)} is not modelled")
    raise SnapExitError(2)
