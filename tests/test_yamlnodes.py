"""Strict YAML loading (service/config/yamlnodes.py): the same refusals with libyaml and without it."""

from __future__ import annotations

import pytest

from service.config import yamlnodes
from service.config.errors import ConfigError


@pytest.fixture(params=["libyaml", "python"])
def composer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(yamlnodes, "_use_libyaml", False)
    elif yamlnodes._CLoader is None:
        pytest.skip("PyYAML without libyaml")
    else:
        monkeypatch.setattr(yamlnodes, "_use_libyaml", True)
    return str(request.param)


@pytest.mark.parametrize(("text", "fragment"), [
    ("a: " + "[" * 500 + "]" * 500, "exceeded max depth of 100"),
    ("a:\n" + "".join("  " * i + "-\n" for i in range(1, 300)), "exceeded max depth of 100"),
    ("a: 1\nb\x00: 2\n", "control characters are not allowed"),
    ("a: 1\na: 2\n", "mapping key 'a' already defined at line 1"),
    ("x: &r {b: 1}\nc: {<<: *r}\n", "merge keys (<<) are not supported"),
    ("a: b: c\n", "yaml: line 1: mapping values are not allowed"),
])
def test_refusals(composer: str, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        yamlnodes.load_node(text)
    assert fragment in str(info.value)


def test_nodes_read_alike(composer: str) -> None:
    node = yamlnodes.load_node("a: true\nb: 'x'\nc: [1, 2]\n")
    assert node is not None
    styles = [(k.value, v.style if hasattr(v, "style") else None) for k, v in node.value]
    assert styles == [("a", None), ("b", "'"), ("c", None)]
    assert node.value[0][1].tag == "tag:yaml.org,2002:bool"
    assert yamlnodes.load_node("") is None
