"""What a PUT stores: the body as the user sent it (comments and formatting kept), named by the URL.

The body's own top-level `name:` (ignored: the URL wins) is cut out and `name: "<url name>"` put first, so
the stored text carries the right name for any reader. A document we cannot edit safely as text (flow style,
directives, a multi-line name value) is re-dumped from its parsed form instead.
"""

from __future__ import annotations

import json
import re

import yaml

from service.config.yamlnodes import load_node

# characters YAML may not carry raw (PyYAML's printable set); JSON leaves C1 controls and a few others as they are
_NOT_YAML_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def yaml_quoted(name: str) -> str:
    """`name` as a YAML double-quoted scalar that reads back as `name` (e.g. a name holding U+008F)."""
    return _NOT_YAML_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(name, ensure_ascii=False))


def stored_yaml(body: bytes | str, name: str, node: yaml.Node | None = None) -> str:
    """`node`: the body already composed (load_node), to spare a second parse."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    if node is None:
        node = load_node(text)
    name_line = f"name: {yaml_quoted(name)}\n"
    if not isinstance(node, yaml.MappingNode):
        return name_line
    stripped = text.lstrip()
    if node.flow_style or stripped.startswith(("---", "%")):
        return _redump(text, name)
    lines = text.splitlines(keepends=True)
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "name":
            first, last = key.start_mark.line, value.end_mark.line
            if value.end_mark.column == 0 and last > first:
                last -= 1
            if last != first or not isinstance(value, yaml.ScalarNode):
                return _redump(text, name)
            del lines[first: last + 1]
            break
    body_text = "".join(lines)
    if body_text and not body_text.endswith("\n"):
        body_text += "\n"
    return name_line + body_text


def _redump(text: str, name: str) -> str:
    data = yaml.safe_load(text) or {}
    data.pop("name", None)
    return yaml.safe_dump({"name": name, **data}, sort_keys=False, allow_unicode=True)
