"""The package map of mk8s/README.md, enforced: data flows one way.

Every `import mk8s.X` / `from mk8s.X import ...` in the library, at any depth (inside functions
and under TYPE_CHECKING too), is read with `ast` and held against the rules:
- the core (inventory, render) imports no edge and no capability;
- an edge imports no capability (settings an edge needs are passed to it);
- nothing imports tasks.py, and no capability imports the CLI glue.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "mk8s"
CORE = {"inventory", "render"}
EDGES = {"edges"}
SHARED = {"errors", "console", "__init__"}  # used by every layer
CLI = {"cli"}


def layer_of(package: str) -> str:
    if package in CORE:
        return "core"
    if package in EDGES:
        return "edge"
    if package in SHARED:
        return "shared"
    if package in CLI:
        return "cli"
    return "capability"


ALLOWED = {
    "shared": {"shared", "core"},  # console draws the plan table (its types only at import)
    "core": {"core", "shared"},
    "edge": {"edge", "core", "shared"},
    "capability": {"capability", "edge", "core", "shared"},
    "cli": {"shared", "core", "edge", "capability", "cli"},  # cli/ is a package of its own
}


def package_of(module: str) -> str:
    """`mk8s.edges.ssh` -> `edges`; `mk8s.errors` -> `errors`; `mk8s` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "mk8s"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mk8s":  # `from mk8s import edges` names a package
                found += [(node.lineno, f"mk8s.{a.name}") for a in node.names]
            elif node.module.split(".")[0] == "mk8s":
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; use mk8s.<package>")
    return found


def violations(library: Path) -> list[str]:
    bad = []
    for path in sorted(library.rglob("*.py")):
        rel = path.relative_to(library.parent)
        own = package_of(".".join(rel.with_suffix("").parts))
        for line, target in imports(path):
            theirs = package_of(target)
            if layer_of(theirs) not in ALLOWED[layer_of(own)]:
                bad.append(
                    f"{rel}:{line}: {layer_of(own)} `{own}` imports {layer_of(theirs)} `{target}`"
                )
    return bad


def test_the_library_follows_the_package_map() -> None:
    assert violations(LIBRARY) == []


def test_every_package_says_what_it_owns() -> None:
    """A newcomer finds where a thing lives from the package docstrings and mk8s/README.md."""
    readme = (LIBRARY / "README.md").read_text()
    for init in sorted(LIBRARY.glob("*/__init__.py")):
        package = init.parent.name
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"mk8s/{package}/__init__.py has no docstring saying what it owns"
        assert f"`{package}/`" in readme, f"mk8s/README.md does not list {package}/"


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("render/bad.py", "from mk8s.edges import ssh\n", "core `render` imports edge"),
        ("inventory/bad.py", "import mk8s.deploy.flow\n", "core `inventory` imports capability"),
        ("edges/bad.py", "from mk8s.bootstrap.flow import Settings\n", "edge `edges` imports"),
        ("edges/bad.py", "def f():\n    from mk8s import provision\n", "edge `edges` imports"),
        ("render/bad.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
         "    from mk8s.edges.kube import Ref\n", "core `render` imports edge"),
    ],
)  # fmt: skip
def test_a_wrong_direction_is_caught(
    tmp_path: Path, module: str, source: str, expected: str
) -> None:
    library = tmp_path / "mk8s"
    (library / module).parent.mkdir(parents=True)
    (library / module).write_text(source)
    (found,) = violations(library)
    assert expected in found, found


def test_a_right_direction_passes(tmp_path: Path) -> None:
    library = tmp_path / "mk8s"
    (library / "deploy").mkdir(parents=True)
    (library / "deploy" / "flow.py").write_text(
        "from mk8s.edges.kube import Api\nfrom mk8s.render import manifests\n"
    )
    assert violations(library) == []
