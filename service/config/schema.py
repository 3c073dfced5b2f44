"""Strict, typed decoding of YAML into dataclasses, and encoding back with secrets masked.

A config section is a dataclass. Field types drive decoding: str, int, float, bool, Duration/GoDuration,
Secret, list[T], dict[str, T], T | None and nested dataclasses. Unknown keys, wrong types and duplicate keys
are errors that name the line, as Go's strict yaml.v2 does. A dataclass may define `check(self)` to validate
itself once decoded (Prometheus does the same in UnmarshalYAML). Field metadata: `yaml` (key name when it
differs from the attribute), `secret` (masked when encoded).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import yaml

from service.config.durations import Duration
from service.config.errors import ConfigError
from service.config.secrets import SECRET_MASK, mask_secret_keys, redact_url
from service.config.yamlnodes import is_null, line_of, load_node, mapping_items

T = TypeVar("T")


class Secret(str):
    """A string that is never shown: encoded as `<secret>` unless asked otherwise."""


def yaml_field(yaml_name: str | None = None, *, default: Any = dataclasses.MISSING,
               default_factory: Any = dataclasses.MISSING, secret: bool = False) -> Any:
    meta = {"yaml": yaml_name, "secret": secret}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, str, Any, bool], ...]:
    """(attribute, yaml key, type, secret) for every field of a dataclass, resolved once."""
    hints = get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        out.append((f.name, f.metadata.get("yaml") or f.name, hints[f.name], bool(f.metadata.get("secret"))))
    return tuple(out)


def type_label(cls: type) -> str:
    return getattr(cls, "__yaml_type__", cls.__name__)


def loads(cls: type[T], data: str | bytes, node: yaml.Node | None = None) -> T:
    """Decode a whole document into `cls`; an empty document is an error (as Go's decoder says: EOF).
    `node` is `data` already composed (load_node), to spare a second parse."""
    if node is None:
        node = load_node(data)
    if node is None or is_null(node):
        raise ConfigError("EOF")
    return decode(cls, node)


def decode(tp: Any, node: yaml.Node) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if is_null(node):
            return None
        return decode(args[0], node)
    if dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, node)
    if origin is list:
        (item_tp,) = get_args(tp)
        if is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise _type_error(node, f"[]{_tname(item_tp)}")
        return [None if is_null(n) and dataclasses.is_dataclass(item_tp) else decode(item_tp, n)
                for n in node.value]
    if origin is dict:
        key_tp, value_tp = get_args(tp)
        if is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise _type_error(node, f"map[string]{_tname(value_tp)}")
        return {decode(key_tp, k): decode(value_tp, v) for k, v in mapping_items(node)}
    if tp is Any:
        return yaml.SafeLoader("").construct_document(node)
    return _decode_scalar(tp, node)


def _decode_dataclass(cls: type, node: yaml.Node) -> Any:
    if is_null(node):
        obj = cls()
    else:
        if not isinstance(node, yaml.MappingNode):
            raise _type_error(node, type_label(cls))
        by_key = {key: (attr, tp) for attr, key, tp, _ in _fields(cls)}
        values: dict[str, Any] = {}
        for key_node, value_node in mapping_items(node):
            target = by_key.get(key_node.value)
            if target is None:
                raise ConfigError(
                    f"line {line_of(key_node)}: field {key_node.value} not found in type {type_label(cls)}"
                )
            attr, tp = target
            values[attr] = decode(tp, value_node)
        obj = cls(**values)
    check = getattr(obj, "check", None)
    if check is not None:
        check()
    return obj


_BOOL_TRUE = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y"}
_BOOL_FALSE = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N"}


def _decode_scalar(tp: Any, node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise _type_error(node, _tname(tp))
    text = node.value
    plain = node.style is None
    try:
        if tp is bool:
            if plain and text in _BOOL_TRUE:
                return True
            if plain and text in _BOOL_FALSE:
                return False
            raise ValueError
        if tp is int:
            if not plain:
                raise ValueError
            return int(text.replace("_", ""), 0)
        if tp is float:
            if not plain:
                raise ValueError
            return float(text)
        if isinstance(tp, type) and issubclass(tp, Duration):
            if plain and text.lstrip("-").isdigit() and text != "0":
                raise ValueError
            return tp.parse(text)
        if isinstance(tp, type) and issubclass(tp, str):
            if is_null(node):
                return tp("")
            return tp(text)
    except ConfigError as exc:
        raise ConfigError(f"line {line_of(node)}: {exc}") from None
    except ValueError:
        raise _type_error(node, _tname(tp)) from None
    raise TypeError(f"unsupported config type {tp!r}")


def _type_error(node: yaml.Node, wanted: str) -> ConfigError:
    if isinstance(node, yaml.ScalarNode):
        shown = f"`{node.value}`"
        kind = "!!" + node.tag.rsplit(":", 1)[-1]
    else:
        shown = ""
        kind = "!!seq" if isinstance(node, yaml.SequenceNode) else "!!map"
    what = f"{kind} {shown}".strip()
    return ConfigError(f"line {line_of(node)}: cannot unmarshal {what} into {wanted}")


def _tname(tp: Any) -> str:
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return type_label(tp)
        if issubclass(tp, Duration):
            return "model.Duration"
        return {str: "string", int: "int", float: "float64", bool: "bool"}.get(tp, tp.__name__)
    return str(tp)


# ---------------------------------------------------------------------------------------------- encoding


def encode(obj: Any, *, show_secrets: bool = False) -> Any:
    """Plain data (dicts in field order) ready for yaml.safe_dump; empty values are left out (omitempty).

    Unless `show_secrets`: Secret fields are masked, URL passwords redacted (`xxxxx`, as Prometheus does) and
    untyped blocks (sigv4, azuread, discovery configs) masked by key name.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for attr, key, tp, secret in _fields(type(obj)):
            value = getattr(obj, attr)
            if _is_empty(value):
                continue
            if (secret or isinstance(value, Secret)) and not show_secrets:
                out[key] = SECRET_MASK
            elif not show_secrets and _untyped(tp):
                out[key] = mask_secret_keys(encode(value))
            else:
                out[key] = encode(value, show_secrets=show_secrets)
        return out
    if isinstance(obj, list):
        return [encode(v, show_secrets=show_secrets) for v in obj]
    if isinstance(obj, dict):
        return {k: encode(v, show_secrets=show_secrets) for k, v in obj.items()}
    if isinstance(obj, Secret):
        return str(obj) if show_secrets else SECRET_MASK
    if isinstance(obj, Duration):
        return str(obj)
    if isinstance(obj, str):
        return str(obj) if show_secrets else redact_url(str(obj))
    return obj


@functools.cache
def _untyped(tp: Any) -> bool:
    """Whether a field holds data we keep untyped (Any, Any | None, list[Any], dict[str, Any])."""
    if tp is Any:
        return True
    return get_origin(tp) in (typing.Union, types.UnionType, list, dict) and any(
        _untyped(a) for a in get_args(tp) if a is not type(None))


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, dict)) and not value)


def dump_yaml(obj: Any, *, show_secrets: bool = False) -> str:
    return yaml.safe_dump(encode(obj, show_secrets=show_secrets), sort_keys=False, allow_unicode=True)


def copy(obj: T) -> T:
    """A deep copy, for applying defaults to a copy while the original stays as the user wrote it."""
    import copy as _copy

    return _copy.deepcopy(obj)
