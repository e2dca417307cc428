"""Contract: mk8s' snap parsers hold against what snapd prints.

SD = canonical/snapd@bee548f (cmd/snapd/cli/). Samples marked `SD test` are the expected
outputs of snapd's own unit tests (the `hello`/`foo` snaps); the microk8s samples are laid out
as snapd's tabwriter lays them out (cmd_list.go minwidth 5 padding 2; cmd_info.go minwidth 2
padding 1), with the Unicode and the non-TTY forms of the publisher badge and closed channels
(color.go addUnicodeChars).
"""

from __future__ import annotations

import pytest

from mk8s.edges import microk8s as mk
from mk8s.edges.snapd import (
    RefreshResult,
    classify_reboot_required,
    classify_refresh,
    classify_snap_list,
    full_channel,
    parse_snap_info,
    parse_snap_list,
)

# SD test cmd_list_test.go TestListWithQuery (a branch shows as `…`, no notes as `-`).
SD_LIST_BRANCH = "Name  Version  Rev  Tracking       Publisher  Notes\nfoo   4.2      17   1.10/stable/…  bar        -\n"
# SD test cmd_list_test.go TestList (a health note).
SD_LIST_HEALTH = "Name  Version  Rev  Tracking  Publisher  Notes\nfoo   4.2      17   potatoes  bar        blocked\n"
HELD_NO_TTY = (
    "Name      Version  Rev   Tracking     Publisher    Notes\n"
    "microk8s  v1.33.5  8205  1.33/stable  canonical**  classic,held\n"
)
NOT_HELD_UNICODE = (
    "Name      Version  Rev   Tracking     Publisher   Notes\n"
    "microk8s  v1.33.5  8205  1.33/stable  canonical✓  classic\n"
)
# SD test cmd_info_test.go TestInfoWithChannelsAndLocal (abs-time, no Unicode).
SD_INFO_HELLO = """name:      hello
summary:   The GNU Hello snap
publisher: Canonical**
store-url: https://snapcraft.io/hello
license:   unset
description: |
  GNU hello prints a friendly greeting. This is part of the snapcraft tour at
  https://snapcraft.io/
snap-id:      mVyGrEwiqSi5PugCwyH7WgpoQLemtTd6
tracking:     beta
refresh-date: 2006-01-02T22:04:07Z
channels:
  1/stable:    2.10 2018-12-18T15:16:56Z   (1) 65.5kB -
  1/candidate: ^                                      
  1/beta:      ^                                      
  1/edge:      ^                                      
installed:     2.10                      (100)  1024B disabled
"""  # noqa: W291
MICROK8S_INFO = """name:      microk8s
summary:   Kubernetes for workstations and appliances
publisher: Canonical✓
tracking:     1.33/stable
refresh-date: 2026-10-02
hold:         forever
channels:
  1.34/stable:    v1.34.1 2026-11-20 (8450) 185MB classic
  1.34/candidate: ↑
  1.34/beta:      ↑
  1.34/edge:      v1.34.2 2026-11-28 (8470) 185MB classic
  1.33/stable:    v1.33.6 2026-11-02 (8233) 180MB classic
  1.33/candidate: v1.33.7 2026-11-25 (8260) 180MB classic
  1.33/beta:      ↑
  1.33/edge:      ↑
  1.20/stable:    –
  1.20/candidate: –
  1.20/beta:      –
  1.20/edge:      –
installed:        v1.33.5            (8205) 180MB classic
"""


def test_snap_list_reads_revision_version_tracking_and_held() -> None:
    snap = parse_snap_list(HELD_NO_TTY)
    assert snap == mk.Snap("1.33/stable", True, "8205", "v1.33.5", ("classic", "held"))
    unheld = parse_snap_list(NOT_HELD_UNICODE)
    assert unheld is not None and not unheld.held and unheld.revision == "8205"


def test_snap_list_samples_from_snapd_tests() -> None:
    branch = parse_snap_list(SD_LIST_BRANCH, "foo")
    assert branch is not None and branch.channel == "1.10/stable/…" and branch.notes == ()
    health = parse_snap_list(SD_LIST_HEALTH, "foo")
    assert health is not None and health.notes == ("blocked",) and not health.held
    assert parse_snap_list(SD_LIST_HEALTH) is None  # microk8s is not in it


def test_snap_list_outcomes_tell_not_installed_from_unknown() -> None:
    assert classify_snap_list(0, HELD_NO_TTY).installed is True
    # SD cmd_list.go ErrNoMatchingSnaps, main.go: `error: ` prefix, exit 1.
    absent = classify_snap_list(1, "", "error: no matching snaps installed\n")
    assert absent.installed is False and absent.snap is None
    # SD client/client.go ConnectionError: snapd not answering is no verdict on the snap.
    down = "error: cannot communicate with server: dial unix /run/snapd.socket: connect: refused\n"
    unknown = classify_snap_list(1, "", down)
    assert unknown.installed is None and "cannot communicate" in unknown.detail
    assert classify_snap_list(0, "").installed is None


def test_snap_info_channels_from_snapds_test() -> None:
    info = parse_snap_info(SD_INFO_HELLO)
    assert info.tracking == "beta" and info.hold is None
    assert info.installed is not None and info.installed.revision == "100"
    assert info.channels["1/stable"].revision == "1"
    assert info.channels["1/edge"].closed
    candidate = info.latest("1/candidate")  # closed ^: served by 1/stable
    assert candidate is not None and candidate.revision == "1"


def test_snap_info_latest_revision_per_channel() -> None:
    info = parse_snap_info(MICROK8S_INFO)
    assert info.hold == "forever" and info.tracking == "1.33/stable"
    stable = info.latest("1.33/stable")
    assert stable is not None and (stable.revision, stable.version) == ("8233", "v1.33.6")
    beta = info.latest("1.34/beta")
    assert beta is not None and beta.revision == "8450"  # follows 1.34/stable
    assert info.latest("1.34") == info.channels["1.34/stable"]
    assert info.latest("1.20/stable") is None  # `–`: nothing released in the track
    assert info.latest("1.35/stable") is None  # not listed
    assert info.installed is not None and info.installed.revision == "8205"


def test_full_channel_as_snapd_normalises_it() -> None:
    assert full_channel("1.34") == "1.34/stable"
    assert full_channel("stable") == "latest/stable"
    assert full_channel("1.34/edge") == "1.34/edge"


@pytest.mark.parametrize(
    ("code", "stdout", "stderr", "result"),
    [
        (0, "microk8s (1.34/stable) v1.34.1 from Canonical** refreshed\n", "", "REFRESHED"),
        (0, "", 'snap "microk8s" has no updates available\n', "NO_UPDATE"),
        (
            1,
            "",
            "error: cannot perform the following tasks:\n"
            '- Run configure hook of "microk8s" snap if present (run hook "configure": '
            "exit status 1)\n",
            "FAILED",
        ),
        (10, "", 'error: snap "microk8s" has "auto-refresh" change in progress\n', "CONFLICT"),
        (1, "", 'error: snap "microk8s" is not installed\n', "NOT_INSTALLED"),
        (1, "", "", "FAILED"),
    ],
)
def test_refresh_outcomes(code: int, stdout: str, stderr: str, result: str) -> None:
    outcome = classify_refresh(code, stdout, stderr)
    assert outcome.result is RefreshResult[result]
    assert outcome.ok == (result in ("REFRESHED", "NO_UPDATE"))
    if result == "FAILED" and stderr:
        assert outcome.reason.startswith('- Run configure hook of "microk8s"')


def test_reboot_required_is_unknown_unless_cat_says_which() -> None:
    assert classify_reboot_required(0, "") is True
    assert (
        classify_reboot_required(1, "cat: /var/run/reboot-required: No such file or directory")
        is False
    )
    assert classify_reboot_required(1, "cat: /var/run/reboot-required: Permission denied") is None
    assert classify_reboot_required(255, "") is None
