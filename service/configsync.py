"""`scraping-service config-sync`: make a node's config store match a directory (Grafana agentctl semantics).

Every `*.yml`/`*.yaml` at the top level of DIR is one instance config named by its file name without the
extension. All files are checked before anything is sent, as the config API would check them, `job_name`s
across files included (one bad file aborts with no change). The plan (create, update, delete) is computed
from the node's list; `--dry-run` prints it and stops. Deleting more than `--delete-threshold` of the node's
configs needs `--yes`: a wrong DIR or `--addr` must not empty a store. Then each config is PUT in lexical
order and every remote config without a local file is deleted.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import quote, urlsplit

from service.cliparser import Parser
from service.config.errors import ConfigError
from service.configcheck import check_instance, duplicate_jobs
from service.metrics.config import GlobalConfig
from service.nodecheck import Problem

FAILED = "one or more configurations failed to be modified"
TOKEN_ENV = "SCRAPING_SERVICE_BEARER_TOKEN"
PASSWORD_ENV = "SCRAPING_SERVICE_PASSWORD"


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


@dataclass
class ClientOptions:
    """How to reach a secured node: agentctl's and Prometheus' client settings, as flags."""

    timeout: float = 30.0
    username: str = ""
    password: str = ""
    bearer_token: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False

    def headers(self) -> dict[str, str]:
        if self.bearer_token:
            return {"Authorization": f"Bearer {self.bearer_token}"}
        if self.username:
            pair = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return {"Authorization": f"Basic {pair}"}
        return {}

    def ssl_context(self) -> ssl.SSLContext:
        """The context for https:// (SyncError naming the file that cannot be loaded)."""
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise SyncError(f"cannot load the CA file {self.ca_file}: {_reason(exc)}") from None
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            try:
                ctx.load_cert_chain(self.cert_file, self.key_file or None)
            except (OSError, ssl.SSLError) as exc:
                raise SyncError(f"cannot load the client certificate {self.cert_file} (key "
                                f"{self.key_file or 'in the same file'}): {_reason(exc)}") from None
        return ctx


def _reason(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message} (see --ca-file)"
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    return getattr(exc, "strerror", None) or str(exc)


class ConfigAPIClient:
    """The config management API of one node, over HTTP(S)."""

    def __init__(self, addr: str, options: ClientOptions | None = None) -> None:
        parts = urlsplit(addr if "://" in addr else f"http://{addr}")
        if not parts.hostname or parts.scheme not in ("http", "https"):
            raise SyncError(f"invalid --addr {addr!r}: want http(s)://HOST:PORT")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.base = parts.path.rstrip("/")
        self.options = options or ClientOptions()
        self._ssl = self.options.ssl_context() if self.scheme == "https" else None

    @property
    def address(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port or (443 if self.scheme == 'https' else 80)}"

    def _call(self, method: str, path: str, body: bytes | None = None) -> Answer:
        timeout = self.options.timeout
        conn = (http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self._ssl)
                if self.scheme == "https" else http.client.HTTPConnection(self.host, self.port, timeout=timeout))
        headers = self.options.headers()
        if body is not None:
            headers["Content-Type"] = "application/x-yaml"
        try:
            conn.request(method, self.base + path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except ssl.SSLError as exc:
            raise SyncError(f"TLS with {self.address} failed: {_reason(exc)}") from None
        except OSError as exc:
            raise SyncError(f"cannot reach {self.address}: {_reason(exc)}") from None
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
            raise SyncError(f"listing the configs of {self.address} failed: HTTP {answer.status}: "
                            f"{answer.error or 'no error message'}")
        data = answer.body.get("data")
        return list(data.get("configs", [])) if isinstance(data, dict) else []

    def put(self, name: str, body: bytes) -> Answer:
        return self._call("POST", f"/agent/api/v1/config/{quote(name, safe='')}", body)

    def delete(self, name: str) -> Answer:
        return self._call("DELETE", f"/agent/api/v1/config/{quote(name, safe='')}")


def load_dir(directory: str) -> dict[str, bytes]:
    """name → body for every YAML file at the top level, each checked as the config API would (job names
    across files included); ConfigError lists every problem, one `file:line:column: message` a line."""
    try:
        entries = sorted(os.listdir(directory))
    except OSError as exc:
        raise ConfigError(f"cannot read directory {directory}: {exc.strerror}") from None
    out: dict[str, bytes] = {}
    checked = []
    problems = []
    for entry in entries:
        path = os.path.join(directory, entry)
        stem, ext = os.path.splitext(entry)
        if ext not in (".yml", ".yaml") or not os.path.isfile(path):
            continue
        with open(path, "rb") as fh:
            body = fh.read()
        # the node decides about files it may read (dangerous_allow_reading_files): not checked here
        item = check_instance(path, body, GlobalConfig(), allow_reading_files=True, name=stem)
        problems.extend(item.problems)
        checked.append(item)
        if stem in out:
            problems.append(Problem(path, 0, 0, f"two files define the config {stem!r}"))
        out[stem] = body
    problems.extend(duplicate_jobs(checked))
    if problems:
        raise ConfigError("\n".join(str(p) for p in problems))
    return out


@dataclass
class Plan:
    """What a sync changes: configs to create, to update (replace) and to delete."""

    create: list[str] = field(default_factory=list)
    update: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    remote: int = 0

    @classmethod
    def of(cls, local: Sequence[str], remote: Sequence[str]) -> Plan:
        have = set(remote)
        return cls(create=[n for n in local if n not in have], update=[n for n in local if n in have],
                   delete=sorted(have - set(local)), remote=len(have))

    def too_many_deletes(self, threshold: float) -> bool:
        """More than `threshold` (a fraction) of the node's configs, and more than one, would go."""
        return len(self.delete) > 1 and len(self.delete) > threshold * self.remote


@dataclass
class Result:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{len(self.created)} created, {len(self.updated)} updated, {len(self.deleted)} deleted, "
                f"{len(self.failed)} failed")


def sync(client: ConfigAPIClient, configs: dict[str, bytes], plan: Plan, *, out: TextIO | None = None,
         err: TextIO | None = None) -> Result:
    """Upload and prune. Each change is a line on `out`, each failure (with the node's message) on `err`."""
    result = Result()
    for name, body in configs.items():
        answer = client.put(name, body)
        if answer.status in (200, 201):
            (result.created if answer.status == 201 else result.updated).append(name)
            _say(out, f"{'created' if answer.status == 201 else 'updated'} config {name}")
        else:
            result.failed.append({"name": name, "action": "upload", "status": answer.status,
                                  "error": answer.error})
            _say(err, f"failed to upload config {name}: HTTP {answer.status}: {answer.error or 'no message'}")
    for name in plan.delete:
        answer = client.delete(name)
        if answer.status == 200 or answer.status == 404:  # 404: someone else deleted it meanwhile
            result.deleted.append(name)
            _say(out, f"deleted config {name}")
        else:
            result.failed.append({"name": name, "action": "delete", "status": answer.status,
                                  "error": answer.error})
            _say(err, f"failed to delete config {name}: HTTP {answer.status}: {answer.error or 'no message'}")
    return result


def _say(stream: TextIO | None, line: str) -> None:
    if stream is not None:
        print(line, file=stream)


def _read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError as exc:
        raise SyncError(f"cannot read the {what} file {path}: {exc.strerror}") from None


def client_options(args: argparse.Namespace) -> ClientOptions:
    token = args.bearer_token
    if args.bearer_token_file:
        token = _read_secret(args.bearer_token_file, "bearer token")
    token = token or os.environ.get(TOKEN_ENV, "")
    password = args.password or ""
    if args.password_file:
        password = _read_secret(args.password_file, "password")
    password = password or os.environ.get(PASSWORD_ENV, "")
    if token and args.username:
        raise SyncError("use either a bearer token or --username, not both")
    return ClientOptions(timeout=args.timeout, username=args.username or "", password=password,
                         bearer_token=token, ca_file=args.ca_file or "", cert_file=args.cert_file or "",
                         key_file=args.key_file or "", insecure_skip_verify=args.insecure_skip_verify)


def parser() -> Parser:
    p = Parser(prog="scraping-service config-sync",
               description="Make a node's config store match the YAML files of a directory.")
    p.add_argument("directory")
    p.add_argument("-a", "--addr", default="http://localhost:12345", help="node address (http(s)://HOST:PORT)")
    p.add_argument("-d", "--dry-run", action="store_true",
                   help="check the files and print what would be created, updated and deleted; change nothing")
    p.add_argument("-y", "--yes", action="store_true",
                   help="allow deleting more than --delete-threshold of the node's configs")
    p.add_argument("--delete-threshold", type=float, default=0.5, metavar="FRACTION",
                   help="deleting more than this fraction of the node's configs (and more than one) needs "
                        "--yes (default 0.5)")
    p.add_argument("--json", action="store_true", help="print the plan or the result as one JSON object")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    auth = p.add_argument_group("authentication and TLS")
    auth.add_argument("--username", help="basic auth user name")
    auth.add_argument("--password", help=f"basic auth password (visible to ps; prefer --password-file or "
                                          f"${PASSWORD_ENV})")
    auth.add_argument("--password-file", help="file holding the basic auth password")
    auth.add_argument("--bearer-token", help=f"bearer token (visible to ps; prefer --bearer-token-file or "
                                             f"${TOKEN_ENV})")
    auth.add_argument("--bearer-token-file", help="file holding the bearer token")
    auth.add_argument("--ca-file", help="CA certificate(s) to verify the node's certificate")
    auth.add_argument("--cert-file", help="client certificate (for nodes that require one)")
    auth.add_argument("--key-file", help="client certificate key")
    auth.add_argument("--insecure-skip-verify", action="store_true",
                      help="do not verify the node's certificate (testing only)")
    return p


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    if not args.addr:
        print("error: --addr must not be empty", file=sys.stderr)
        return 1
    try:
        configs = load_dir(args.directory)
    except ConfigError as exc:
        print(f"error: {exc}" if "\n" not in str(exc) else str(exc), file=sys.stderr)
        print("no change made", file=sys.stderr)
        return 1
    if args.dry_run and not args.json:
        print(f"{len(configs)} config files checked")
    try:
        client = ConfigAPIClient(args.addr, client_options(args))
        plan = Plan.of(list(configs), client.list())
    except SyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.dry_run:
        _print_plan(plan, args.json)
        return 0
    if plan.too_many_deletes(args.delete_threshold) and not args.yes:
        print(f"error: this would delete {len(plan.delete)} of the {plan.remote} configs on {client.address} "
              f"(more than {args.delete_threshold:.0%}); check DIR and --addr, see the plan with --dry-run, "
              "then run again with --yes. No change made.", file=sys.stderr)
        return 1
    try:
        result = sync(client, configs, plan, out=None if args.json else sys.stdout, err=sys.stderr)
    except SyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"dry_run": False, "created": result.created, "updated": result.updated,
                          "deleted": result.deleted, "failed": result.failed}))
    else:
        print(result.summary())
    if result.failed:
        print(f"error: {FAILED}", file=sys.stderr)
        return 1
    return 0


def _print_plan(plan: Plan, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"dry_run": True, "create": plan.create, "update": plan.update, "delete": plan.delete}))
        return
    for verb, names in (("create", plan.create), ("update", plan.update), ("delete", plan.delete)):
        for name in names:
            print(f"would {verb} config {name}")
    print(f"dry run: {len(plan.create)} to create, {len(plan.update)} to update, {len(plan.delete)} to delete; "
          "no change made")
