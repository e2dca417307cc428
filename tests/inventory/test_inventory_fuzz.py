"""Random mutations of a valid inventory: a valid Plan or clean error lines, never a crash."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mk8s.errors import InventoryError
from mk8s.inventory.load import parse_inventory
from mk8s.render.plan import build_plan
from tests.conftest import ROOT

BASE: dict[str, Any] = yaml.safe_load((ROOT / "inventory" / "prod.yaml").read_text())


def leaf_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [prefix] + [p for k, v in node.items() for p in leaf_paths(v, (*prefix, k))]
    if isinstance(node, list):
        return [prefix] + [p for i, v in enumerate(node) for p in leaf_paths(v, (*prefix, i))]
    return [prefix]


PATHS = [p for p in leaf_paths(BASE) if p]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.ip_addresses(v=4).map(str),
    st.sampled_from(["192.168.30.0/24", "10.1.0.0/16", "1.33/stable", "a-b", "", "-", "/"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
mutation = st.tuples(st.sampled_from(PATHS), st.sampled_from(["set", "delete", "add"]), values)


def apply(data: dict[str, Any], path: tuple[Any, ...], op: str, value: Any) -> None:
    parent: Any = data
    for part in path[:-1]:
        parent = parent[part]
    key = path[-1]
    if op == "set":
        parent[key] = value
    elif op == "delete":
        del parent[key]
    elif isinstance(parent, dict):
        parent[f"{key}_extra"] = value
    else:
        parent.append(value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_inventory_gives_plan_or_clean_errors(mutations: list[Any]) -> None:
    data = copy.deepcopy(BASE)
    for path, op, value in mutations:
        try:
            apply(data, path, op, value)
        except (KeyError, IndexError, TypeError, AttributeError):
            continue  # an earlier mutation removed or reshaped this path (e.g. set it to null)
    text = yaml.safe_dump(data)
    try:
        env = parse_inventory(text)
    except InventoryError as exc:
        assert exc.lines, "an InventoryError must carry at least one line"
        for line in exc.lines:
            assert "\n" not in line and ": " in line and "Traceback" not in line, line
        return
    plan = build_plan(env)
    assert plan.artifact("plan.json").content
