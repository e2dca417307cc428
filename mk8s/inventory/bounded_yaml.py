"""Reading inventory YAML within bounds: duplicate keys, depth, aliases and size are refused.

PyYAML's safe loader keeps the last of two equal keys (a second `nodes:` silently replaces the
cluster), composes recursively (a deeply nested flow sequence is a RecursionError), and shares
aliased nodes, so a few hundred bytes of anchors expand to millions of values for whoever walks
the result (issue 12). Each limit below is far above what a real inventory uses (the shipped
ones are ~5 KB, depth 5, no aliases) and each breach is one line naming where it happened.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, SequenceNode
from yaml.resolver import Resolver

try:  # libyaml's event parser: composing in Python on top of it is ~5x faster than pure Python
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


MAX_BYTES = 128 * 1024
MAX_DEPTH = 32
MAX_ALIASES = 100
MAX_VALUES = 50_000  # scalars + collections once aliases are expanded


class YamlLimitError(Exception):
    """The text breaks one of the bounds; the message is one line without the source name."""


def _line(node: Node | yaml.Event | None) -> int:
    return node.start_mark.line + 1 if node is not None and node.start_mark else 0


class BoundedLoader(_Parser, Composer, SafeConstructor, Resolver):
    """libyaml's events, composed here (counting depth and aliases), duplicate keys refused."""

    # CParser composes in C, where nothing can be counted: compose with PyYAML's Composer.
    get_single_node = Composer.get_single_node
    compose_document = Composer.compose_document

    def __init__(self, text: str) -> None:
        _Parser.__init__(self, text)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise YamlLimitError(
                    f"line {_line(self.peek_event())}: more than {MAX_ALIASES} aliases (*name)"
                )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlLimitError(
                    f"line {_line(self.peek_event())}: nested deeper than {MAX_DEPTH} levels"
                )
            return Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` then an explicit key is an override, not a duplicate
            key = self.construct_object(key_node, deep=True)
            try:
                if key in first_line:
                    raise YamlLimitError(
                        f"line {_line(key_node)}: duplicate key {key!r} "
                        f"(first at line {first_line[key]})"
                    )
                first_line[key] = _line(key_node)
            except TypeError:
                continue  # an unhashable key: the constructor below names it
        return SafeConstructor.construct_mapping(self, node, deep=deep)


def expanded_size(node: Node, limit: int = MAX_VALUES) -> int:
    """Values the document holds once every alias is expanded; stops counting past `limit`."""
    memo: dict[int, int] = {}
    open_: set[int] = set()

    def size(n: Node) -> int:
        if id(n) in memo:
            return memo[id(n)]
        if id(n) in open_:
            raise YamlLimitError(f"line {_line(n)}: an alias refers to its own anchor")
        open_.add(id(n))
        total = 1
        if isinstance(n, SequenceNode):
            total += sum(size(child) for child in n.value)
        elif isinstance(n, MappingNode):
            total += sum(size(k) + size(v) for k, v in n.value)
        memo[id(n)] = total = min(total, limit + 1)
        return total

    return size(node)


def load_bounded(text: str) -> Any:
    """The document's data, or YamlLimitError / yaml.YAMLError; fast on hostile input."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_BYTES:
        raise YamlLimitError(f"{size} bytes is more than the {MAX_BYTES} an inventory may have")
    loader = BoundedLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        if expanded_size(root) > MAX_VALUES:
            raise YamlLimitError(f"holds more than {MAX_VALUES} values once aliases are expanded")
        return loader.construct_document(root)
    finally:
        loader.dispose()
