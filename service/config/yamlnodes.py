"""Strict YAML loading into a node tree.

We decode configs from PyYAML's node tree rather than from plain Python objects so that errors can name
the line, duplicate keys are caught (PyYAML silently keeps the last one), and alias expansion is bounded
(a "billion laughs" document is only a few aliases deep but expands exponentially when walked).
"""

from __future__ import annotations

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
        return node


def load_node(data: str | bytes) -> yaml.Node | None:
    """Parse one YAML document into a node tree; None for an empty document."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"invalid UTF-8 at byte {exc.start}") from None
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


def _check_expansion(root: yaml.Node) -> None:
    """Walk the tree as a decoder would (aliases expanded) and stop past MAX_NODES."""
    count = 0
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ConfigError(f"document expands to more than {MAX_NODES} nodes (too many aliases?)")
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
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
