"""`scraping-service config-check`: the checks a starting node runs, and those the config API runs, offline.

    scraping-service config-check [-e] agent.yaml [more.yaml ...] [--instance a.yaml b.yaml ...]

Node files get `service.nodecheck.check_node_file`, the very function `run` and reloads use. Instance configs
get what `PUT /agent/api/v1/config/<name>` does (the name is the file's name without its extension): strict
decoding, the global defaults of the (first) node file, the no-files rule unless that node allows reading
files, and `job_name`s unique across all the instance files given.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from service.cliparser import Parser
from service.config.errors import ConfigError
from service.metrics.config import GlobalConfig, InstanceConfig, apply_defaults, check_reading_files, job_names
from service.nodecheck import Problem, check_node_file, decode_checked


@dataclass
class InstanceFile:
    """One instance config file as the config API would see it."""

    path: str
    name: str
    body: bytes = b""
    jobs: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)


def instance_name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def check_instance(path: str, body: bytes, global_cfg: GlobalConfig, *, allow_reading_files: bool = False,
                   name: str | None = None) -> InstanceFile:
    """Decode and validate one instance config as `PUT /agent/api/v1/config/<name>` does."""
    out = InstanceFile(path, name or instance_name(path), body)
    cfg, problems, where = decode_checked(InstanceConfig, body, path, empty_ok=False)
    out.problems.extend(problems)
    if cfg is None:
        return out
    cfg.name = out.name
    try:
        applied = apply_defaults(cfg, global_cfg)
        if not allow_reading_files:
            check_reading_files(applied)
    except ConfigError as exc:
        out.problems.append(where.problem_at((), f"failed to validate config: {exc}"))
        return out
    out.jobs = job_names(applied)
    return out


def duplicate_jobs(files: Sequence[InstanceFile]) -> list[Problem]:
    """A job_name used by two configs: the config API refuses the second one stored."""
    owner: dict[str, InstanceFile] = {}
    out: list[Problem] = []
    for item in files:
        for job in sorted(item.jobs):
            first = owner.setdefault(job, item)
            if first is not item:
                out.append(Problem(item.path, 0, 0, f'job_name "{job}" is also used by the config {first.name} '
                                                    f"({first.path}); the config API refuses it"))
    return out


def main(argv: Sequence[str]) -> int:
    parser = Parser(prog="scraping-service config-check",
                    description="Run the checks a starting node runs on node files (and those the config API "
                                "runs on instance configs), offline. Exit 1 when any file has a problem.")
    parser.add_argument("files", nargs="*", metavar="FILE", help="node files (agent.yaml)")
    parser.add_argument("-i", "--instance", nargs="+", action="extend", default=[], metavar="FILE",
                        help="instance config files, named by their file names, checked as the config API "
                             "would (with the first node file's global defaults)")
    parser.add_argument("-e", "--expand-env", "-config.expand-env", dest="expand_env", action="store_true",
                        help="expand ${VAR} in node files, as -config.expand-env does")
    args = parser.parse_args(argv)
    if not args.files and not args.instance:
        parser.error("give at least one node file or --instance file")

    problems: list[Problem] = []
    valid: list[str] = []
    global_cfg, allow_files = GlobalConfig(), False
    for index, path in enumerate(args.files):
        result = check_node_file(path, expand=args.expand_env)
        problems.extend(result.problems)
        if result.config is None:
            continue
        if index == 0:
            global_cfg = result.config.metrics.global_
            allow_files = result.config.metrics.scraping_service.dangerous_allow_reading_files
        ignored = result.ignored
        valid.append(path)
        if ignored:
            print(f"{path}: accepted but ignored (not implemented): {', '.join(ignored)}")
        for problem in result.config.metrics.unsupported_sd():  # accepted with metrics.accept_unsupported_sd
            print(f"{path}: warning: {problem} is not run by this node: no targets are discovered from it",
                  file=sys.stderr)
    instances = []
    for path in args.instance:
        try:
            with open(path, "rb") as fh:
                body = fh.read()
        except OSError as exc:
            problems.append(Problem(path, 0, 0, f"cannot read the config file: {exc.strerror}"))
            continue
        item = check_instance(path, body, global_cfg, allow_reading_files=allow_files)
        problems.extend(item.problems)
        instances.append(item)
        if not item.problems:
            valid.append(path)
    problems.extend(duplicate_jobs(instances))

    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        bad = len({p.file for p in problems})
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {bad} "
              f"file{'s' if bad != 1 else ''}", file=sys.stderr)
        return 1
    total = len(args.files) + len(args.instance)
    print("config valid" if total == 1 else f"config valid ({total} files)")
    return 0
