"""What snapd prints for the `snap` verbs mk8s runs, parsed into typed values (no I/O here;
the verbs that run them are in mk8s.edges.microk8s).

SD = canonical/snapd@bee548f (2.77+; the CLI lives in cmd/snapd/cli/, formerly cmd/snap/).
mk8s runs `snap` over SSH without a terminal, so snapd prints no Unicode (SD cmd/snapd/cli/
color.go canUnicode is false when stdout is no TTY): the publisher badge is `**`, a closed
channel under an open one is `^` and a track without releases `--`. Parsers also accept the
Unicode forms (`✓`, `↑`, `–`) that an operator's paste carries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

# SD cmd/snapd/cli/cmd_list.go Execute: header and columns, tab-aligned (padding 2).
LIST_COLUMNS = ("Name", "Version", "Rev", "Tracking", "Publisher", "Notes")
# SD cmd/snapd/cli/cmd_list.go ErrNoMatchingSnaps, printed as `error: ...` with exit 1
# (cmd/snapd/cli/error.go errorPrefix, main.go exitCodeFromError default).
NOT_INSTALLED = "no matching snaps installed"
RISKS = ("stable", "candidate", "beta", "edge")  # SD snap/channel/channel.go channelRisks
CLOSED_MARKS = frozenset({"^", "↑", "--", "–"})  # SD cmd_info.go addClosedChannel
FOLLOWS_ABOVE = frozenset({"^", "↑"})  # closed, but a more stable risk of the track is open


def full_channel(channel: str) -> str:
    """`1.33` -> `1.33/stable`, `stable` -> `latest/stable` (SD snap/channel/channel.go Full)."""
    parts = [p for p in channel.split("/") if p]
    if len(parts) == 1:
        return f"latest/{parts[0]}" if parts[0] in RISKS else f"{parts[0]}/stable"
    if len(parts) == 2 and parts[0] in RISKS:  # risk/branch
        return f"latest/{parts[0]}/{parts[1]}"
    return "/".join(parts)


# --- snap list ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snap:
    """One row of `snap list microk8s`: Name Version Rev Tracking Publisher Notes.

    `held` is the `held` note: SD cmd/snapd/cli/notes.go NotesFromLocal sets it while the snap's
    own hold lies in the future (`snap refresh --hold microk8s` holds it forever) and String()
    joins the notes with commas, e.g. `classic,held`. Tracking `-` is a local snap, a branch
    shows as `1.33/stable/…` (cmd_list.go fmtChannel)."""

    channel: str
    held: bool
    revision: str = ""
    version: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SnapRead:
    """`snap list microk8s` as one value: installed (snap set), not installed, or unknown."""

    snap: Snap | None
    installed: bool | None  # None: the output said neither
    detail: str = ""


def parse_snap_list(stdout: str, name: str = "microk8s") -> Snap | None:
    rows = [ln.split() for ln in stdout.splitlines() if ln.strip()]
    header = next((r for r in rows if r[:1] == ["Name"]), None)
    if header is None or any(c not in header for c in LIST_COLUMNS):
        return None
    col = {c: header.index(c) for c in LIST_COLUMNS}
    row = next((r for r in rows if r[:1] == [name] and len(r) == len(header)), None)
    if row is None:
        return None
    notes = tuple(n for n in row[col["Notes"]].split(",") if n and n != "-")
    return Snap(
        channel=row[col["Tracking"]],
        held="held" in notes,
        revision=row[col["Rev"]],
        version=row[col["Version"]],
        notes=notes,
    )


def classify_snap_list(code: int, stdout: str, stderr: str = "") -> SnapRead:
    if code == 0 and (snap := parse_snap_list(stdout)) is not None:
        return SnapRead(snap, True)
    if code == 1 and NOT_INSTALLED in stderr + stdout:
        return SnapRead(None, False, NOT_INSTALLED)
    lines = [ln.strip() for ln in (stderr + "\n" + stdout).splitlines() if ln.strip()]
    return SnapRead(None, None, lines[-1] if lines else f"exit {code}, no output")


# --- snap info ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    """One line of the `channels:` section of `snap info` (SD cmd_info.go channelInfos.dump:
    `  NAME: VERSION RELEASED (REV) SIZE NOTES`; a closed channel prints only its mark)."""

    channel: str
    version: str | None = None
    revision: str | None = None
    released: str | None = None
    mark: str | None = None  # the closed channel's mark: ^ follows the risk above, -- nothing

    @property
    def closed(self) -> bool:
        return self.mark is not None


@dataclass(frozen=True)
class SnapInfo:
    tracking: str | None = None
    hold: str | None = None  # `hold: forever` (SD cmd_info.go maybePrintRefreshInfo)
    installed: Release | None = None
    channels: Mapping[str, Release] = field(default_factory=dict)

    def latest(self, channel: str) -> Release | None:
        """The release a refresh to `channel` gets: the channel's own, or for a closed channel
        marked ^ the nearest open more stable risk of the same track (the store serves it);
        None when nothing is released there or the channel is not listed."""
        name = full_channel(channel)
        track, _, risk = name.partition("/")
        if risk not in RISKS:
            rel = self.channels.get(name)
            return rel if rel is not None and not rel.closed else None
        for r in reversed(RISKS[: RISKS.index(risk) + 1]):
            rel = self.channels.get(f"{track}/{r}")
            if rel is None:
                return None
            if not rel.closed:
                return rel
            if rel.mark not in FOLLOWS_ABOVE:
                return None
        return None


_OPEN = re.compile(r"^\s+(\S+):\s+(\S+)\s+(?:(\S+)\s+)?\((\S+)\)(?:\s+\S+){0,2}\s*$")
_CLOSED = re.compile(r"^\s+(\S+):\s+(\S+)\s*$")
_INSTALLED = re.compile(r"^installed:\s+(\S+)\s+\((\S+)\)")


def parse_snap_info(stdout: str) -> SnapInfo:
    tracking = hold = None
    installed: Release | None = None
    channels: dict[str, Release] = {}
    in_channels = False
    for line in stdout.splitlines():
        if not line.startswith(" "):
            in_channels = line.rstrip() == "channels:"
            key, _, value = line.partition(":")
            if key == "tracking":
                tracking = value.strip()
            elif key == "hold":
                hold = value.strip()
            elif m := _INSTALLED.match(line):
                installed = Release("installed", m[1], m[2])
            continue
        if not in_channels:
            continue
        if m := _OPEN.match(line):
            channels[m[1]] = Release(m[1], m[2], m[4], m[3])
        elif (m := _CLOSED.match(line)) and m[2] in CLOSED_MARKS:
            channels[m[1]] = Release(m[1], mark=m[2])
    return SnapInfo(tracking, hold, installed, channels)


# --- snap refresh --------------------------------------------------------------------------


class RefreshResult(Enum):
    REFRESHED = "refreshed"
    NO_UPDATE = "no updates available"
    FAILED = "failed (snapd undid the change)"
    CONFLICT = "another change in progress"
    NOT_INSTALLED = "not installed"


@dataclass(frozen=True)
class RefreshOutcome:
    result: RefreshResult
    reason: str  # snapd's own line(s)
    code: int

    @property
    def ok(self) -> bool:
        return self.result in (RefreshResult.REFRESHED, RefreshResult.NO_UPDATE)


def classify_refresh(code: int, stdout: str, stderr: str = "") -> RefreshOutcome:
    """`snap refresh microk8s --channel=X` (SD cmd/snapd/cli/cmd_snap_op.go refreshOne):
    - 0 `microk8s (1.34/stable) v1.34.1 from Canonical** refreshed` (showDoneSnap);
    - 0 `snap "microk8s" has no updates available` on stderr (error.go errorToCmdMessage,
      not an error);
    - 1 `error: cannot perform the following tasks:` then `- TASK (ERROR)` lines
      (overlord/state/change.go changeError); the change is undone, the old revision stays
      (overlord/snapstate/handlers.go undoLinkSnap);
    - 10 `error: snap "microk8s" has "..." change in progress` (client/client.go IsRetryable,
      main.go exitCodeFromError);
    - 1 `error: snap "microk8s" is not installed` (snap/errors.go NotInstalledError)."""
    text = stdout + "\n" + stderr
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if code == 0 and "has no updates available" in text:
        return RefreshOutcome(RefreshResult.NO_UPDATE, _line(lines, "no updates"), code)
    if code == 0:
        return RefreshOutcome(RefreshResult.REFRESHED, _line(lines, " refreshed"), code)
    if code == 10 or "change in progress" in text:
        return RefreshOutcome(RefreshResult.CONFLICT, _line(lines, "in progress"), code)
    if "is not installed" in text:
        return RefreshOutcome(RefreshResult.NOT_INSTALLED, _line(lines, "not installed"), code)
    tasks = [ln for ln in lines if ln.startswith("- ")]
    reason = "; ".join(tasks) or (lines[-1] if lines else f"exit {code}, no output")
    return RefreshOutcome(RefreshResult.FAILED, reason, code)


def _line(lines: list[str], needle: str) -> str:
    return next((ln for ln in lines if needle in ln), lines[-1] if lines else "")


# --- /var/run/reboot-required --------------------------------------------------------------


def classify_reboot_required(code: int, stderr: str) -> bool | None:
    """`cat /var/run/reboot-required`: 0 the file exists, 1 with `No such file or directory`
    it does not (coreutils cat); anything else is unknown."""
    if code == 0:
        return True
    if code == 1 and "No such file or directory" in stderr:
        return False
    return None
