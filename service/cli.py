"""Command line, compatible with Grafana Agent static mode's flags.

    scraping-service -config.file=agent.yaml [-server.http.address=HOST:PORT] [-config.expand-env]
    scraping-service run ...            (the same)
    scraping-service config-check FILE  (validate a node file offline)
    scraping-service wal-stats DIR      (summarise an instance WAL, or every WAL under wal_directory)

Flags take one or two dashes and `=value` or a separate value, as Go's flag package does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from service.config.errors import ConfigError

DEFAULT_ADDRESS = "127.0.0.1:12345"


def _bool_flag(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scraping-service", allow_abbrev=False,
                                     description="Run a scraping-service node.")
    parser.add_argument("-config.file", "--config.file", dest="config_file", required=True,
                        help="node config file (Grafana Agent static-mode YAML)")
    parser.add_argument("-server.http.address", "--server.http.address", dest="http_address", default=None,
                        help=f"HOST:PORT to listen on (default {DEFAULT_ADDRESS})")
    parser.add_argument("-config.expand-env", "--config.expand-env", dest="expand_env", nargs="?",
                        const=True, default=False, type=_bool_flag,
                        help="expand ${VAR} and ${VAR:-default} in the config file")
    parser.add_argument("-config.enable-read-api", "--config.enable-read-api", dest="read_api", nargs="?",
                        const=True, default=True, type=_bool_flag,
                        help="serve GET /agent/api/v1/configs/{name} (default true; secrets are never shown)")
    return parser


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid address {address!r}: want HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def run(argv: Sequence[str]) -> int:
    args = _run_parser().parse_args(argv)
    from service.settings import load_node_config

    try:
        cfg = load_node_config(args.config_file, expand=args.expand_env)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    address = args.http_address
    if address is None:
        server = cfg.server
        address = (f"{server.http_listen_address or '127.0.0.1'}:{server.http_listen_port}"
                   if server.http_listen_port else DEFAULT_ADDRESS)
    try:
        host, port = split_address(address)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    from service import log
    from service.server import serve

    log.configure(cfg.server.log_level, cfg.server.log_format)
    from service.node import NodeOptions

    options = NodeOptions(config_file=args.config_file, expand_env=args.expand_env,
                          read_api_enabled=args.read_api)
    return serve(cfg, options, host, port)


def config_check(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="scraping-service config-check",
                                     description="Validate a node config file offline.")
    parser.add_argument("file")
    parser.add_argument("-e", "--expand-env", "-config.expand-env", dest="expand_env", action="store_true")
    args = parser.parse_args(argv)
    from service.settings import load_node_config

    try:
        cfg = load_node_config(args.file, expand=args.expand_env)
    except ConfigError as exc:
        print(f"failed to load config: {exc}", file=sys.stderr)
        return 1
    for problem in cfg.metrics.unsupported_sd():  # accepted with metrics.accept_unsupported_sd
        print(f"warning: {problem} is not run by this node: no targets are discovered from it", file=sys.stderr)
    print("config valid")
    return 0


def wal_stats(argv: Sequence[str]) -> int:
    from service.metrics.walstats import main as wal_stats_main

    return wal_stats_main(argv)


def target_stats(argv: Sequence[str]) -> int:
    from service.metrics.scrape.targetstats import main as target_stats_main

    return target_stats_main(argv)


def config_sync(argv: Sequence[str]) -> int:
    from service.configsync import main as config_sync_main

    return config_sync_main(argv)


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "run": run, "config-check": config_check, "wal-stats": wal_stats, "target-stats": target_stats,
    "config-sync": config_sync,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        return COMMANDS[args[0]](args[1:])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
