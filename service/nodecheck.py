"""What a node checks before it starts, shared by `run`, SIGHUP reloads and `config-check`.

Decoding stops at a node file's first error; users fixing a file want all of them, each with file, line and
column. So the file is walked section by section: an unknown key or a bad value is reported where it is and
the walk goes on; a section's own `check()` runs once its fields are clean. Then come the checks the node
would otherwise only hit while starting: the KV store kind, certificate files, pipeline stages.
"""

from __future__ import annotations

import dataclasses
import re
import ssl
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import yaml

from service.config.errors import ConfigError
from service.config.schema import decode, type_label
from service.config.yamlnodes import is_null, load_node
from service.settings import MetricsConfig, NodeConfig, expand_env

T = TypeVar("T")
SUPPORTED_STORES = ("etcd", "embedded", "inmemory")
_LINE_PREFIX = re.compile(r"^(?:yaml: )?line (\d+): ")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file, at a 1-based line and column (0 when the file as a whole is meant)."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        if not self.line:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


@dataclass
class NodeFileCheck:
    """The outcome: the config (None unless there are no problems), what is wrong, and what is ignored."""

    path: str
    config: NodeConfig | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ignored(self) -> list[str]:
        return self.config.unimplemented() if self.config is not None else []

    def error(self) -> ConfigError:
        return ConfigError("\n".join(str(p) for p in self.problems))


def check_node_file(path: str, *, expand: bool = False) -> NodeFileCheck:
    """Every check a node runs on its file before starting; `problems` is empty when it can start."""
    out = NodeFileCheck(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        out.problems.append(Problem(path, 0, 0, f"cannot read the config file: {exc.strerror}"))
        return out
    cfg, problems, where = decode_checked(NodeConfig, raw, path, expand=expand)
    out.problems.extend(problems)
    if cfg is not None and not problems:
        out.problems.extend(sorted(startup_problems(cfg, where), key=lambda p: (p.line, p.column)))
    if not out.problems:
        out.config = cfg
    return out


def load_node_config(path: str, *, expand: bool = False) -> NodeConfig:
    """The node file as the node starts (and reloads) with it: every check of `config-check` passed.
    Raises ConfigError with one `file:line:column: problem` line per problem."""
    result = check_node_file(path, expand=expand)
    if result.config is None:
        raise result.error()
    return result.config


def decode_checked(cls: type[T], raw: bytes | str, path: str, *, expand: bool = False,
                   empty_ok: bool = True) -> tuple[T | None, list[Problem], _Locator]:
    """Decode a document into `cls` with every problem found (the value is None when there are any). An
    empty document is the defaults (a node file) or, with `empty_ok=False`, an error (an instance config)."""
    locator = _Locator(path, raw, expand)
    if locator.error is not None:
        return None, [locator.error], locator
    if locator.root is None or is_null(locator.root):
        if not empty_ok:
            return None, [Problem(path, 0, 0, "EOF: the document is empty")], locator
        return cls(), [], locator
    problems: list[Problem] = []
    _Walker(locator, problems).walk(cls, locator.root, "")
    if problems:
        return None, sorted(problems, key=lambda p: (p.line, p.column)), locator
    try:
        return decode(cls, locator.root), [], locator
    except ConfigError as exc:  # a check the walk could not attribute to a section
        return None, [locator.problem(locator.root, str(exc))], locator


class _Locator:
    """The file's text and node tree, and how to turn a node or a message into a position."""

    def __init__(self, path: str, raw: bytes | str, expand: bool) -> None:
        self.path = path
        self.root: yaml.Node | None = None
        self.error: Problem | None = None
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.lines: list[str] = []
                self.error = Problem(path, 0, 0, f"invalid UTF-8 at byte {exc.start}")
                return
        text = expand_env(raw) if expand else raw
        self.lines = text.splitlines()
        try:
            yaml.SafeLoader(text).get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
            self.error = Problem(path, line, col, f"yaml: {exc.problem or exc}")
            return
        except yaml.YAMLError as exc:
            self.error = Problem(path, 0, 0, f"yaml: {exc}")
            return
        try:
            self.root = load_node(text)
        except ConfigError as exc:  # duplicate keys, merge keys, alias bombs
            self.error = self.message_problem(str(exc))

    def problem(self, node: yaml.Node, message: str) -> Problem:
        """At `node`, unless the message names another line (an error from deeper inside)."""
        match = _LINE_PREFIX.match(message)
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        if match:
            message = message[match.end():]
            named = int(match.group(1))
            if named != line:
                line, col = named, self._first_column(named)
        return Problem(self.path, line, col, message)

    def message_problem(self, message: str) -> Problem:
        match = _LINE_PREFIX.match(message)
        if not match:
            return Problem(self.path, 0, 0, message)
        line = int(match.group(1))
        return Problem(self.path, line, self._first_column(line), message[match.end():])

    def _first_column(self, line: int) -> int:
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return len(text) - len(text.lstrip()) + 1

    def at(self, *keys: str | int) -> yaml.Node | None:
        """The node at a path of mapping keys and list indexes (the deepest one present)."""
        node = self.root
        for key in keys:
            child = None
            if isinstance(node, yaml.MappingNode) and isinstance(key, str):
                child = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                child = node.value[key]
            if child is None:
                return node
            node = child
        return node

    def problem_at(self, keys: tuple[str | int, ...], message: str) -> Problem:
        node = self.at(*keys)
        if node is None:
            return Problem(self.path, 0, 0, message)
        return Problem(self.path, node.start_mark.line + 1, node.start_mark.column + 1, message)


def _field_types(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls)
    return {f.metadata.get("yaml") or f.name: hints[f.name] for f in dataclasses.fields(cls)}


class _Walker:
    """Decodes section by section so that one error does not hide the next."""

    def __init__(self, locator: _Locator, problems: list[Problem]) -> None:
        self.locator = locator
        self.problems = problems
        self.extra: dict[type, Callable[[yaml.MappingNode, str], None]] = {MetricsConfig: self._instances}

    def walk(self, tp: Any, node: yaml.Node, path: str) -> None:
        origin = get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            if is_null(node):
                return
            tp = next(a for a in get_args(tp) if a is not type(None))
            origin = get_origin(tp)
        if dataclasses.is_dataclass(tp) and isinstance(node, yaml.MappingNode):
            self._walk_section(tp, node, path)
            return
        if origin is list and isinstance(node, yaml.SequenceNode) and dataclasses.is_dataclass(get_args(tp)[0]):
            for index, item in enumerate(node.value):
                if not is_null(item):
                    self.walk(get_args(tp)[0], item, f"{path}[{index}]")
            return
        self._decode(tp, node, path)

    def _walk_section(self, tp: type, node: yaml.MappingNode, path: str) -> None:
        types_by_key = _field_types(tp)
        known = []
        for key_node, value_node in node.value:
            key = getattr(key_node, "value", None)
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(self.locator.problem(key_node, "mapping keys must be scalars"))
            elif key not in types_by_key:
                self.problems.append(self.locator.problem(
                    key_node, f"field {key} not found in type {type_label(tp)}"))
            else:
                known.append((key_node, value_node))
        unknown_only = len(self.problems)
        for key_node, value_node in known:
            self.walk(types_by_key[key_node.value], value_node, f"{path}.{key_node.value}" if path else key_node.value)
        if len(self.problems) != unknown_only:
            return  # the section's own check would only repeat (or be misled by) its fields' problems
        if tp in self.extra:
            self.extra[tp](node, path)
        if len(self.problems) == unknown_only:
            # unknown keys left out, so that the section's check still reports what else is wrong
            clean = yaml.MappingNode(node.tag, known, node.start_mark, node.end_mark, node.flow_style)
            self._decode(tp, clean, path)

    def _decode(self, tp: Any, node: yaml.Node, path: str) -> None:
        try:
            decode(tp, node)
        except ConfigError as exc:
            message = str(exc)
            if path and not _LINE_PREFIX.match(message):
                message = f"{path}: {message}"
            self.problems.append(self.locator.problem(node, message))

    def _instances(self, node: yaml.MappingNode, path: str) -> None:
        """Each `metrics.configs` entry with the global defaults applied, reported where that entry is."""
        from service.metrics.config import GlobalConfig, InstanceConfig, apply_defaults

        global_node = self.locator.at("metrics", "global")
        configs_node = self.locator.at("metrics", "configs")
        if not isinstance(configs_node, yaml.SequenceNode):
            return
        global_cfg = (decode(GlobalConfig, global_node) if isinstance(global_node, yaml.MappingNode)
                      and global_node is not node else GlobalConfig())
        for index, item in enumerate(configs_node.value):
            if is_null(item):
                continue
            cfg = decode(InstanceConfig, item)
            if not cfg.name:
                continue  # the section check names it
            try:
                apply_defaults(cfg, global_cfg)
            except ConfigError as exc:
                self.problems.append(self.locator.problem(item, f"{path}.configs[{index}] ({cfg.name}): {exc}"))


# ---------------------------------------------------------------------------------------------- start-up checks


def startup_problems(cfg: NodeConfig, where: _Locator) -> list[Problem]:
    """What a decoded, valid file would still make the node fail on while starting."""
    out: list[Problem] = []
    service = cfg.metrics.scraping_service
    kv = service.kvstore
    if service.enabled and kv.store not in SUPPORTED_STORES:
        out.append(where.problem_at(
            ("metrics", "scraping_service", "kvstore", "store"),
            f"kvstore.store {kv.store} is not supported: this node keeps configs in etcd or in its embedded "
            "store (set store: etcd or store: embedded)"))
    if service.enabled and kv.store == "etcd" and kv.etcd.tls_enabled:
        etcd = kv.etcd
        for key, file in (("tls_ca_path", etcd.tls_ca_path), ("tls_cert_path", etcd.tls_cert_path),
                          ("tls_key_path", etcd.tls_key_path)):
            out.extend(_readable(file, where, ("metrics", "scraping_service", "kvstore", "etcd", key)))
    out.extend(_server_tls(cfg, where))
    for index, inst in enumerate(cfg.metrics.configs):
        for kind, clients in (("remote_write", inst.remote_write), ("scrape_configs", inst.scrape_configs)):
            for j, client in enumerate(clients):
                for key, file in client.tls_config.files():
                    out.extend(_readable(file, where, ("metrics", "configs", index, kind, j, "tls_config", key)))
    out.extend(_logs(cfg, where))
    return out


def _readable(file: str, where: _Locator, keys: tuple[str | int, ...], what: str = "") -> list[Problem]:
    if not file:
        return []
    try:
        with open(file, "rb"):
            pass
    except OSError as exc:
        return [where.problem_at(keys, f"{what}cannot read {keys[-1]} {file}: {exc.strerror}")]
    return []


def _server_tls(cfg: NodeConfig, where: _Locator) -> list[Problem]:
    tls = cfg.server.http_tls_config
    base = ("server", "http_tls_config")
    out: list[Problem] = []
    for key in ("cert_file", "key_file", "client_ca_file"):
        out.extend(_readable(getattr(tls, key), where, (*base, key), "cannot load the TLS certificate: "))
    if out or not tls.enabled:
        return out
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except ssl.SSLError as exc:
        out.append(where.problem_at((*base, "cert_file"), f"cannot load the TLS certificate {tls.cert_file} "
                                                         f"with the key {tls.key_file}: {exc.reason or exc}"))
    if tls.client_ca_file:
        try:
            ctx.load_verify_locations(tls.client_ca_file)
        except ssl.SSLError as exc:
            out.append(where.problem_at((*base, "client_ca_file"),
                                        f"cannot load the CA file {tls.client_ca_file}: {exc.reason or exc}"))
    return out


def _logs(cfg: NodeConfig, where: _Locator) -> list[Problem]:
    from service.logs.stages.pipeline import compile_stages

    out: list[Problem] = []
    for i, inst in enumerate(cfg.logs.configs if cfg.logs is not None else []):
        for j, client in enumerate(inst.clients):
            for key, file in client.tls_config.files():
                out.extend(_readable(file, where, ("logs", "configs", i, "clients", j, "tls_config", key)))
        for j, sc in enumerate(inst.scrape_configs):
            push_tls = sc.loki_push_api.server.http_tls_config if sc.loki_push_api is not None else None
            if push_tls is not None:
                base = ("logs", "configs", i, "scrape_configs", j, "loki_push_api", "server", "http_tls_config")
                for key in ("cert_file", "key_file", "client_ca_file"):
                    out.extend(_readable(getattr(push_tls, key), where, (*base, key),
                                         f"loki_push_api {sc.job_name}: cannot load the TLS certificate: "))
            stages = sc.pipeline_stages if isinstance(sc.pipeline_stages, list) else [sc.pipeline_stages]
            for k, stage in enumerate(stages):
                try:
                    compile_stages([stage])
                except ConfigError as exc:
                    keys = ("logs", "configs", i, "scrape_configs", j, "pipeline_stages", k)
                    out.append(where.problem_at(keys, f"logs instance {inst.name}, job {sc.job_name}: {exc}"))
    return out

