"""Targets: from a discovered label set to final labels and a scrape URL (Prometheus' populateLabels, 2.42)."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from service.config.durations import format_prom_duration, parse_prom_duration
from service.config.errors import ConfigError
from service.metrics.config.scrape import ScrapeConfig
from service.relabel import Relabeler


class TargetError(ValueError):
    """A discovered target that cannot be scraped (no address, bad interval, ...)."""


@dataclass(frozen=True)
class Target:
    """`labels` are the final labels (no `__` names); `internal` keeps every label after relabeling."""

    labels: dict[str, str]
    discovered_labels: dict[str, str]
    internal: dict[str, str]
    url: str
    interval: float
    timeout: float

    @property
    def key(self) -> bytes:
        """Identity across discovery updates: the label set and the URL."""
        text = "\xff".join(f"{k}\xfe{v}" for k, v in sorted(self.internal.items())) + "\xff" + self.url
        return hashlib.blake2b(text.encode(), digest_size=16).digest()

    def hash64(self) -> int:
        return int.from_bytes(self.key[:8], "little")


def _has_port(addr: str) -> bool:
    if addr.startswith("["):
        return "]:" in addr
    return addr.count(":") == 1


def _needs_port(addr: str) -> bool:
    if _has_port(addr):
        return False
    if ":" in addr:
        try:
            ipaddress.IPv6Address(addr)
        except ValueError:
            return False
        return False  # a bare IPv6 address is ambiguous; Go's SplitHostPort(addr + ":1234") fails too
    return True


def target_url(labels: dict[str, str], config_params: dict[str, list[str]] | None = None) -> str:
    """Prometheus' Target.URL: every configured value of a param is sent, a `__param_<name>` label replaces
    the first; the path is escaped as Go's url.URL does (a `?` in metrics_path is part of the path)."""
    params = {k: list(v) for k, v in (config_params or {}).items()}
    for name, value in labels.items():
        if name.startswith("__param_"):
            key = name[len("__param_"):]
            if params.get(key):
                params[key][0] = value
            else:
                params[key] = [value]
    path = quote(labels.get("__metrics_path__", ""), safe="/$&+,:;=@")
    url = f"{labels.get('__scheme__', 'http')}://{labels['__address__']}{path}"
    query = urlencode([(k, v) for k in sorted(params) for v in params[k]])
    return f"{url}?{query}" if query else url


@functools.lru_cache(maxsize=1024)
def _defaults(job: str, interval: float, timeout: float, path: str, scheme: str) -> tuple[tuple[str, str], ...]:
    """The labels every target of a scrape config starts with (formatted once per config, not per target)."""
    return (("job", job), ("__scrape_interval__", format_prom_duration(interval)),
            ("__scrape_timeout__", format_prom_duration(timeout)), ("__metrics_path__", path), ("__scheme__", scheme))


def populate_labels(discovered: dict[str, str], sc: ScrapeConfig, relabeler: Relabeler
                    ) -> tuple[Target | None, dict[str, str]]:
    """(target, pre-relabel labels); target None when relabeling drops it. Raises TargetError."""
    lset = dict(discovered)
    for name, value in _defaults(sc.job_name, float(sc.scrape_interval or 60), float(sc.scrape_timeout or 10),
                                 sc.metrics_path, sc.scheme):
        if not lset.get(name):
            lset[name] = value
    for name, values in sc.params.items():
        if values:
            lset["__param_" + name] = values[0]
    pre = dict(sorted(item for item in lset.items() if item[1]))
    result = relabeler.process(pre) if relabeler else dict(pre)
    if result is None:
        return None, pre
    addr = result.get("__address__", "")
    if not addr:
        raise TargetError("no address")
    if _needs_port(addr):
        scheme = result.get("__scheme__", "")
        if scheme in ("http", ""):
            addr += ":80"
        elif scheme == "https":
            addr += ":443"
        else:
            raise TargetError(f"invalid scheme: {scheme!r}")
        result["__address__"] = addr
    if "/" in addr:
        raise TargetError(f'"{addr}" is not a valid hostname')
    try:
        interval = parse_prom_duration(result.get("__scrape_interval__", ""))
        timeout = parse_prom_duration(result.get("__scrape_timeout__", ""))
    except ConfigError as exc:
        raise TargetError(f"error parsing scrape interval or timeout: {exc}") from None
    if interval == 0:
        raise TargetError("scrape interval cannot be 0")
    if timeout == 0:
        raise TargetError("scrape timeout cannot be 0")
    if timeout > interval:
        raise TargetError(f"scrape timeout cannot be greater than scrape interval ({timeout} > {interval})")
    internal = {k: v for k, v in result.items() if not k.startswith("__meta_")}
    if not internal.get("instance"):
        internal["instance"] = addr
    for name, value in internal.items():
        if "\ufffd" in value:
            raise TargetError(f"invalid label value for {name!r}: {value!r}")
    internal = dict(sorted(internal.items()))
    labels = {k: v for k, v in internal.items() if not k.startswith("__")}
    return Target(labels, pre, internal, target_url(internal, sc.params), interval, timeout), pre
