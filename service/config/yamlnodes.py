"""Strict YAML loading into a node tree.

We decode configs from PyYAML's node tree rather than from plain Python objects so that errors can name
the line, duplicate keys are caught (PyYAML silently keeps the last one), and alias expansion is bounded
(a "billion laughs" document is only a few aliases deep but expands exponentially when walked).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import yaml

from service.config.errors import ConfigError

# Upper bound on nodes visited while walking a document, aliases counted at every use.
MAX_NODES = 200_000
# Upper bound on nesting: PyYAML composes (and our decoders walk) recursively, so a 1 KB document nested 500
# deep would exhaust Python's stack. Real configs nest about 10 deep.
MAX_DEPTH = 100


class _StrictComposer(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys and nesting deeper than MAX_DEPTH while composing."""

    _depth = 0

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ConfigError(f"yaml: line {mark.line + 1}: exceeded max depth of {MAX_DEPTH}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor):  # type: ignore[no-untyped-def]
        node = super().compose_mapping_node(anchor)
        _check_keys(node)
        return node


_CLoader = getattr(yaml, "CSafeLoader", None)
# Documents up to this many characters are composed in C (libyaml) in every process. The C composer holds the
# GIL for the whole document, but about 0.3 us per character: 16 KiB costs the event loop ~5 ms at most,
# while a small config composes in ~0.1 ms instead of ~2.5 ms in Python. Config parsing was the largest CPU
# cost of a node taking over thousands of configs.
LIBYAML_SMALL_CHARS = 16 * 1024
_libyaml_max_chars = LIBYAML_SMALL_CHARS if _CLoader is not None else -1


def prefer_libyaml() -> None:
    """Compose every document in C from now on, whatever its size (about 8x faster: a 4 MiB config takes
    1.3 s of CPU instead of 9 s).

    Only for a process with no event loop to keep responsive, such as the config validation process: the C
    composer holds the GIL for the whole document, while the Python one lets other threads run every few
    milliseconds."""
    global _libyaml_max_chars
    if _CLoader is not None:
        _libyaml_max_chars = sys.maxsize


def load_node(data: str | bytes) -> yaml.Node | None:
    """Parse one YAML document into a node tree; None for an empty document. The same limits and checks hold
    whichever composer runs (C for small documents, or for all after prefer_libyaml)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"invalid UTF-8 at byte {exc.start}") from None
    if len(data) <= _libyaml_max_chars:
        return _load_node_c(data)
    try:
        loader = _StrictComposer(data)  # the reader refuses control characters (a NUL) right here
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error_text(exc)) from None
    try:
        node = loader.get_single_node()
    except ConfigError:
        raise
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error_text(exc)) from None
    finally:
        loader.dispose()
    if node is not None:
        _check_expansion(node)
    return node


def _load_node_c(text: str) -> yaml.Node | None:
    bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if bad is not None:
        raise ConfigError(f"yaml: control characters are not allowed (#x{ord(bad.group()):04x} at position "
                          f"{bad.start()})")
    try:
        # Nesting first, from the event stream (flat): libyaml's composer recurses on the C stack.
        depth = 0
        for event in yaml.parse(text, Loader=_CLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ConfigError(f"yaml: line {event.start_mark.line + 1}: exceeded max depth of {MAX_DEPTH}")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        loader = _CLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error_text(exc)) from None
    if node is not None:
        _check_expansion(node, strict_keys=True)
    return node


def _check_keys(node: yaml.MappingNode) -> None:
    """No merge keys, no duplicate keys: checked while composing in Python, after composing in C."""
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue
        if key_node.value == "<<":
            raise ConfigError(f"line {key_node.start_mark.line + 1}: merge keys (<<) are not supported")
        line = key_node.start_mark.line + 1
        if key_node.value in seen:
            key, first = key_node.value, seen[key_node.value]
            raise ConfigError(f"line {line}: mapping key {key!r} already defined at line {first}")
        seen[key_node.value] = line


def _check_expansion(root: yaml.Node, strict_keys: bool = False) -> None:
    """Walk the tree as a decoder would (aliases expanded) and stop past MAX_NODES."""
    count = 0
    stack: list[yaml.Node] = [root]
    checked: set[int] = set()
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ConfigError(f"document expands to more than {MAX_NODES} nodes (too many aliases?)")
        if strict_keys and isinstance(node, yaml.ScalarNode) and node.style == "":
            node.style = None  # libyaml's plain style, as the Python composer writes it
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            if strict_keys and id(node) not in checked:
                checked.add(id(node))
                _check_keys(node)
            for key, value in node.value:
                stack.append(key)
                stack.append(value)


def _yaml_error_text(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):  # str() would carry a multi-line position text
        char = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or b"\0")
        return f"yaml: control characters are not allowed (#x{char:04x} at position {exc.position})"
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"yaml: line {mark.line + 1}: {problem}"
    return f"yaml: {problem}"


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def mapping_items(node: yaml.MappingNode) -> Iterator[tuple[yaml.ScalarNode, yaml.Node]]:
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise ConfigError(f"line {line_of(key)}: mapping keys must be scalars")
        yield key, value


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"
