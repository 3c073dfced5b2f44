"""`scraping-service config-sync`: make a node's config store match a directory (Grafana agentctl semantics).

Every `*.yml`/`*.yaml` at the top level of DIR is one instance config named by its file name without the
extension. All files are parsed before anything is sent (one bad file aborts with no change); then each is
PUT in lexical order and every remote config without a local file is deleted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO
from urllib.parse import quote, urlsplit

from service.config.errors import ConfigError
from service.metrics.config import parse_instance

FAILED = "one or more configurations failed to be modified; check the logs for more details"


class SyncError(Exception):
    pass


@dataclass
class Answer:
    status: int
    body: dict[str, object]

    @property
    def error(self) -> str:
        data = self.body.get("data")
        return str(data.get("error", "")) if isinstance(data, dict) else ""


class ConfigAPIClient:
    """The config management API of one node, over plain HTTP(S)."""

    def __init__(self, addr: str, timeout: float = 30.0) -> None:
        parts = urlsplit(addr if "://" in addr else f"http://{addr}")
        if not parts.hostname:
            raise SyncError(f"invalid --addr {addr!r}")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.base = parts.path.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: bytes | None = None) -> Answer:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, self.base + path, body=body,
                         headers={"Content-Type": "application/x-yaml"} if body is not None else {})
            resp = conn.getresponse()
            raw = resp.read()
        except OSError as exc:
            raise SyncError(f"cannot reach {self.scheme}://{self.host}:{self.port}: {exc}") from None
        finally:
            conn.close()
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {"data": {"error": raw.decode("utf-8", "replace").strip()}}
        return Answer(resp.status, parsed if isinstance(parsed, dict) else {})

    def list(self) -> list[str]:
        answer = self._call("GET", "/agent/api/v1/configs")
        if answer.status != 200:
            raise SyncError(f"listing configs failed: HTTP {answer.status} {answer.error}")
        data = answer.body.get("data")
        return list(data.get("configs", [])) if isinstance(data, dict) else []

    def put(self, name: str, body: bytes) -> Answer:
        return self._call("POST", f"/agent/api/v1/config/{quote(name, safe='')}", body)

    def delete(self, name: str) -> Answer:
        return self._call("DELETE", f"/agent/api/v1/config/{quote(name, safe='')}")


def load_dir(directory: str) -> dict[str, bytes]:
    """name → body for every YAML file at the top level; raises ConfigError naming the first bad file."""
    try:
        entries = sorted(os.listdir(directory))
    except OSError as exc:
        raise ConfigError(f"cannot read directory {directory}: {exc.strerror}") from None
    out: dict[str, bytes] = {}
    for entry in entries:
        path = os.path.join(directory, entry)
        stem, ext = os.path.splitext(entry)
        if ext not in (".yml", ".yaml") or not os.path.isfile(path):
            continue
        with open(path, "rb") as fh:
            body = fh.read()
        try:
            parse_instance(body, stem)
        except ConfigError as exc:
            raise ConfigError(f"failed to parse {path}: {exc}") from None
        if stem in out:
            raise ConfigError(f"two files define the config {stem!r}")
        out[stem] = body
    return out


def sync(client: ConfigAPIClient, configs: dict[str, bytes], out: TextIO = sys.stdout) -> bool:
    """Upload and prune; True when every change succeeded. Progress goes to `out`."""
    counts = {"created": 0, "updated": 0, "deleted": 0, "failed": 0}
    for name, body in configs.items():
        answer = client.put(name, body)
        if answer.status in (200, 201):
            kind = "created" if answer.status == 201 else "updated"
            counts[kind] += 1
            print(f"{kind} config {name}", file=out)
        else:
            counts["failed"] += 1
            print(f"failed to upload config {name}: HTTP {answer.status}: {answer.error}", file=out)
    for name in client.list():
        if name in configs:
            continue
        answer = client.delete(name)
        if answer.status == 200:
            counts["deleted"] += 1
            print(f"deleted config {name}", file=out)
        else:
            counts["failed"] += 1
            print(f"failed to delete config {name}: HTTP {answer.status}: {answer.error}", file=out)
    print(", ".join(f"{n} {k}" for k, n in counts.items()), file=out)
    return counts["failed"] == 0


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="scraping-service config-sync",
                                     description="Make the config store match the YAML files of a directory.")
    parser.add_argument("directory")
    parser.add_argument("-a", "--addr", default="http://localhost:12345", help="node address (HTTP URL)")
    parser.add_argument("-d", "--dry-run", action="store_true", help="only parse the files")
    args = parser.parse_args(argv)
    if not args.addr:
        print("error: --addr must not be empty", file=sys.stderr)
        return 1
    try:
        configs = load_dir(args.directory)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.dry_run:
        print(f"config files validated successfully ({len(configs)} configs)")
        return 0
    try:
        ok = sync(ConfigAPIClient(args.addr), configs)
    except SyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not ok:
        print(f"error: {FAILED}", file=sys.stderr)
        return 1
    return 0
