"""Command line, compatible with Grafana Agent static mode's flags.

    scraping-service -config.file=agent.yaml [-server.http.address=HOST:PORT] [-config.expand-env]
    scraping-service run ...                  (the same)
    scraping-service config-check FILE...     (every check a starting node runs, offline)
    scraping-service config-sync DIR          (make a node's config store match a directory)
    scraping-service wal-stats DIR            (summarise metrics and logs WALs)
    scraping-service target-stats DIR -j JOB -i INSTANCE
    scraping-service help [COMMAND] | version

Flags take one or two dashes and `=value` or a separate value, as Go's flag package does.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable, Sequence

from service import __version__
from service.cliparser import Parser
from service.config.errors import ConfigError

DEFAULT_ADDRESS = "127.0.0.1:12345"
PROG = "scraping-service"


def _bool_flag(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def _run_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, allow_abbrev=False, description="Run a scraping-service node.")
    parser.add_argument("-config.file", "--config.file", dest="config_file",
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
    parser = _run_parser()
    args = parser.parse_args(argv)  # an unknown flag is named before a missing one
    if not args.config_file:
        parser.error("-config.file is required to run a node")
    from service.nodecheck import check_node_file

    checked = check_node_file(args.config_file, expand=args.expand_env)
    if checked.config is None:
        for problem in checked.problems:
            print(f"error: node failed to start: {problem}", file=sys.stderr)
        return 1
    cfg = checked.config
    address = args.http_address
    if address is None:
        server = cfg.server
        address = (f"{server.http_listen_address or '127.0.0.1'}:{server.http_listen_port}"
                   if server.http_listen_port else DEFAULT_ADDRESS)
    try:
        host, port = split_address(address)
    except ValueError as exc:
        print(f"error: node failed to start: {exc}", file=sys.stderr)
        return 1

    from service import log
    from service.server import serve

    log.configure(cfg.server.log_level, cfg.server.log_format)
    from service.node import NodeOptions

    options = NodeOptions(config_file=args.config_file, expand_env=args.expand_env,
                          read_api_enabled=args.read_api)
    try:
        return serve(cfg, options, host, port)
    except (ConfigError, ValueError, OSError) as exc:  # a part the checks above could not foresee
        print(f"error: node failed to start: {exc}", file=sys.stderr)
        return 1


def config_check(argv: Sequence[str]) -> int:
    from service.configcheck import main as config_check_main

    return config_check_main(argv)


def wal_stats(argv: Sequence[str]) -> int:
    from service.walstats import main as wal_stats_main

    return wal_stats_main(argv)


def target_stats(argv: Sequence[str]) -> int:
    from service.metrics.scrape.targetstats import main as target_stats_main

    return target_stats_main(argv)


def config_sync(argv: Sequence[str]) -> int:
    from service.configsync import main as config_sync_main

    return config_sync_main(argv)


def version(argv: Sequence[str]) -> int:
    """`version`, `--version`, `-version`: Grafana Agent prints its version the same ways."""
    print(f"{PROG}, version {__version__} (python {platform.python_version()}, {platform.system().lower()}/"
          f"{platform.machine()})")
    return 0


COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "run": (run, "run a node (the default when the first argument is a flag)"),
    "config-check": (config_check, "check node files (and instance configs) exactly as a starting node does"),
    "config-sync": (config_sync, "make a node's config store match a directory of instance configs"),
    "wal-stats": (wal_stats, "summarise metrics and logs WALs"),
    "target-stats": (target_stats, "series per metric name for one target, read from a WAL"),
    "version": (version, "print the version"),
    "help": (lambda argv: help_command(argv), "show this help, or a command's: help COMMAND"),
}
HELP_FLAGS = ("-h", "--help", "-help")
VERSION_FLAGS = ("--version", "-version")


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"usage: {PROG} [run] -config.file=FILE [flags]", f"       {PROG} COMMAND [args]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "run flags:"]
    run_help = _run_parser().format_help()
    lines += run_help[run_help.index("options:") + len("options:\n"):].rstrip("\n").splitlines()
    lines += ["", f"Run '{PROG} help COMMAND' for a command's flags."]
    return "\n".join(lines)


def help_command(argv: Sequence[str]) -> int:
    if not argv:
        print(usage())
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"{PROG}: error: unknown command {name!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if name in ("help", "version"):
        print(f"usage: {PROG} {name}{' [COMMAND]' if name == 'help' else ''}\n\n{COMMANDS[name][1]}; also "
              f"{', '.join(HELP_FLAGS if name == 'help' else VERSION_FLAGS)}")
        return 0
    return COMMANDS[name][0](["--help"])


def _dispatch(args: list[str]) -> int:
    if not args:
        print(usage(), file=sys.stderr)
        print(f"\n{PROG}: error: -config.file is required to run a node", file=sys.stderr)
        return 2
    first = args[0]
    if first in HELP_FLAGS:
        return help_command([])
    if first in VERSION_FLAGS:
        return version([])
    if first in COMMANDS:
        return COMMANDS[first][0](args[1:])
    if not first.startswith("-"):
        print(f"{PROG}: error: unknown command {first!r}; commands: {', '.join(COMMANDS)}\n"
              f"Run '{PROG} --help' for usage.", file=sys.stderr)
        return 2
    if any(a in HELP_FLAGS for a in args):
        return help_command([])
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _dispatch(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()
    except BrokenPipeError:  # `... | head`: the reader is gone; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
