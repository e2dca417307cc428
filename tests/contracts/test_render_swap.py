"""The render swap when the process dies (kill -9, power loss) mid-way: the next run's
`recover` puts the previous render back, so its diff is the full change (issue 12)."""

from __future__ import annotations

from pathlib import Path

from mk8s.render import staging


def _render(out: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)


def test_a_swap_killed_half_way_is_undone_by_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "build" / "dev"
    before = {
        "plan.json": "old plan",
        "a.yaml": "old a",
        "gone.yaml": "old gone",
        "kubeconfig": "k",
    }
    _render(out, before)
    staged = staging.stage(
        out,
        {"plan.json": ("new plan", 0o644), "a.yaml": ("new a", 0o644), "b.yaml": ("new b", 0o600)},
        replaced=["plan.json", "a.yaml", "gone.yaml"],
        added=["b.yaml"],
    )
    # The process dies after moving two files in and deleting one: nothing retired the staging.
    (staged / "new" / "a.yaml").replace(out / "a.yaml")
    (staged / "new" / "b.yaml").replace(out / "b.yaml")
    (out / "gone.yaml").unlink()

    staging.recover(out)

    after = {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_staging_without_ready_is_dropped_and_touches_nothing(tmp_path: Path) -> None:
    out = tmp_path / "build" / "dev"
    _render(out, {"plan.json": "old"})
    (out / staging.STAGING / "new").mkdir(parents=True)
    (out / staging.STAGING / "new" / "plan.json").write_text("half")
    staging.recover(out)
    assert not (out / staging.STAGING).exists()
    assert (out / "plan.json").read_text() == "old"


def test_a_finished_swap_leaves_no_staging(tmp_path: Path) -> None:
    out = tmp_path / "build" / "dev"
    _render(out, {"plan.json": "old"})
    staged = staging.stage(out, {"plan.json": ("new", 0o644)}, ["plan.json"], [])
    staging.commit(out, staged, ["plan.json"], [])
    assert sorted(p.name for p in out.iterdir()) == ["plan.json"]
    assert (out / "plan.json").read_text() == "new"
