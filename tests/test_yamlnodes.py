"""Strict YAML loading (service/config/yamlnodes.py): the same refusals with libyaml and without it."""

from __future__ import annotations

import sys

import pytest

from service.config import yamlnodes
from service.config.errors import ConfigError


@pytest.fixture(params=["libyaml", "python"])
def composer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(yamlnodes, "_libyaml_max_chars", -1)
    elif yamlnodes._CLoader is None:
        pytest.skip("PyYAML without libyaml")
    else:
        monkeypatch.setattr(yamlnodes, "_libyaml_max_chars", sys.maxsize)
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


def test_small_documents_compose_in_c_large_ones_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every process composes a small config in C (a node taking over thousands of configs), and a large one
    in Python, which lets other threads and the event loop run while it composes."""
    if yamlnodes._CLoader is None:
        pytest.skip("PyYAML without libyaml")
    calls: list[int] = []
    compose_c = yamlnodes._load_node_c

    def counted(text: str):  # type: ignore[no-untyped-def]
        calls.append(len(text))
        return compose_c(text)

    monkeypatch.setattr(yamlnodes, "_load_node_c", counted)
    small = yamlnodes.load_node("a: 1\nb: [x, y]\n")
    assert small is not None and calls == [len("a: 1\nb: [x, y]\n")]
    big_text = "".join(f"k{i}: {i}\n" for i in range(yamlnodes.LIBYAML_SMALL_CHARS // 4))
    big = yamlnodes.load_node(big_text)
    assert big is not None and len(big.value) == yamlnodes.LIBYAML_SMALL_CHARS // 4
    assert len(calls) == 1  # composed in Python
