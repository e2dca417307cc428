"""A corpus of hostile and broken inventories: every task answers exit 2 with one line naming
the key or the line, fast, with no traceback (issue 12)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mk8s.errors import InventoryError
from mk8s.inventory.bounded_yaml import MAX_ALIASES, YamlLimitError, load_bounded
from mk8s.inventory.load import parse_inventory
from tests.contracts.support import ENV_TASKS, ROOT, run_task

LAB = (ROOT / "inventory" / "lab.yaml").read_text()


def _alias_bomb(levels: int = 9) -> str:
    """The billion-laughs shape: 9 lists of 9 aliases each, ~600 bytes, 9**9 values expanded."""
    lines = ['l0: &l0 ["ha", "ha", "ha", "ha", "ha", "ha", "ha", "ha", "ha"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return LAB + "\n".join(lines) + "\n"


def _big() -> str:
    # 40 MB in the issue; anything far above an inventory's size must be refused before parsing.
    return LAB + "# " + "x" * 1_000_000 + "\n"


# (id, text, words the single error line must contain)
CORPUS: list[tuple[str, str, tuple[str, ...]]] = [
    (
        "second nodes block",
        LAB + "nodes:\n  - {name: x, vmid: 1, ip: 127.0.61.99, pve_node: pve1}\n",
        ("duplicate key 'nodes'", "line "),
    ),
    (
        "duplicate in flow map",
        LAB.replace("cores: 4,", "cores: 4, cores: 8,"),
        ("duplicate key 'cores'",),
    ),
    ("deep nesting", "name: " + "[" * 5000 + "]" * 5000 + "\n", ("nest",)),
    (
        "deep block nesting",
        "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 60)),
        ("nested deeper",),
    ),
    ("alias bomb", _alias_bomb(), ("aliases",)),
    ("too big", _big(), ("bytes",)),
    ("self alias", LAB + "loop: &loop [*loop]\n", ("alias",)),
]


@pytest.mark.parametrize(("text", "words"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_loader_refuses_in_one_line_well_under_a_second(text: str, words: tuple[str, ...]) -> None:
    started = time.monotonic()
    with pytest.raises(InventoryError) as caught:
        parse_inventory(text, source="bad.yaml")
    elapsed = time.monotonic() - started
    assert elapsed < 0.5, f"{elapsed:.2f}s"
    assert len(caught.value.lines) == 1, caught.value.lines
    line = caught.value.lines[0]
    assert line.startswith("bad.yaml: "), line
    for word in words:
        assert word in line, line


def test_duplicate_key_names_both_lines() -> None:
    text = "name: a\nproxmox: {}\nname: b\n"
    with pytest.raises(InventoryError) as caught:
        parse_inventory(text, source="x.yaml")
    assert caught.value.lines == ("x.yaml: line 3: duplicate key 'name' (first at line 1)",)


def test_merge_key_override_is_not_a_duplicate() -> None:
    """`<<: *defaults` then the same key is YAML's override idiom: still accepted."""
    text = "d: &d {a: 1, b: 2}\nx: {<<: *d, a: 3}\n"
    assert load_bounded(text) == {"d": {"a": 1, "b": 2}, "x": {"a": 3, "b": 2}}


def test_a_few_aliases_are_fine() -> None:
    text = "base: &b [1, 2]\n" + "".join(f"k{i}: *b\n" for i in range(MAX_ALIASES))
    assert len(load_bounded(text)) == MAX_ALIASES + 1
    with pytest.raises(YamlLimitError, match="aliases"):
        load_bounded(text + "one_more: *b\n")


def test_shipped_inventories_stay_well_inside_the_bounds() -> None:
    for path in sorted((ROOT / "inventory").glob("*.yaml")):
        started = time.monotonic()
        parse_inventory(path.read_text(), source=str(path))
        assert time.monotonic() - started < 0.2, path


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(ENV_TASKS))
@pytest.mark.parametrize(
    ("text", "words"),
    [
        c[1:]
        for c in CORPUS
        if c[0] in ("second nodes block", "deep nesting", "alias bomb", "too big")
    ],
    ids=["second nodes block", "deep nesting", "alias bomb", "too big"],
)
def test_every_task_refuses_a_hostile_inventory(
    task: str, text: str, words: tuple[str, ...], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    outcome = run_task(task, "--env", str(bad), *ENV_TASKS[task], cwd=tmp_path)
    outcome.assert_one_line(2, str(bad), *words, within_s=6)
    assert not (tmp_path / "build").exists(), "nothing may be rendered from a refused inventory"


def test_error_lines_are_printed_as_is_not_as_markup(tmp_path: Path) -> None:
    """Through Rich markup this line lost `[a-z0-9]` and `[x]` (issue 12)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(LAB.replace("name: lab", 'name: "Lab[x]!"', 1))
    outcome = run_task("check", "--env", str(bad), cwd=tmp_path)
    line = outcome.assert_one_line(2)
    assert line == (
        "error: name: String should match pattern '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' "
        "(got 'Lab[x]!')"
    )
