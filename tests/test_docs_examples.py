"""The examples in README.md and docs/ stay true.

- Every YAML block decodes, strictly, as one of the config sections it can be a part of.
- `examples/agent.yaml` passes every check a starting node runs.
- Every `scraping-service` command line in docs/cli.md names a real command and real flags.
- The `curl` examples run, in order, against a real node started from `examples/agent.yaml` (on a free
  loopback port instead of 12345), and print what the docs say they print (`# {...}` or `# HTTP/1.1 ...`
  after the command). Volatile fields (ids, timestamps, timings) are not compared.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from service.cluster.config import ScrapingServiceConfig
from service.logs.config import LogsInstanceConfig
from service.logs.search.config import SearchConfig
from service.metrics.config import InstanceConfig
from service.nodecheck import check_node_file, decode_checked
from service.settings import MetricsConfig, NodeConfig
from tests.helpers.cli import run_cli
from tests.helpers.node_process import REPO, NodeProcess
from tests.helpers.polling import wait_for

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# What a YAML block in the docs can be: a whole node file, or one of its sections shown on its own.
SECTIONS = (NodeConfig, InstanceConfig, LogsInstanceConfig, MetricsConfig, ScrapingServiceConfig, SearchConfig)
VOLATILE = {"processingTimeMs", "timestamp", "id"}


def blocks(path: Path, lang: str) -> list[tuple[int, str]]:
    """(line, text) of every fenced block of `lang`."""
    out, current, start = [], None, 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if current is None and line.strip() == f"```{lang}":
            current, start = [], number + 1
        elif current is not None and line.strip() == "```":
            out.append((start, "\n".join(current) + "\n"))
            current = None
        elif current is not None:
            current.append(line)
    return out


YAML_BLOCKS = [(path, line, text) for path in DOCS for line, text in blocks(path, "yaml")]


@pytest.mark.parametrize(("path", "line", "text"), YAML_BLOCKS,
                         ids=[f"{p.name}:{n}" for p, n, _ in YAML_BLOCKS])
def test_yaml_examples_decode(path: Path, line: int, text: str) -> None:
    tried = []
    for section in SECTIONS:
        value, problems, _ = decode_checked(section, text, f"{path.name}:{line}", expand=True)
        if not problems:
            if isinstance(value, LogsInstanceConfig):
                from service.logs.stages.pipeline import compile_stages

                for sc in value.scrape_configs:
                    compile_stages(sc.pipeline_stages)
            return
        tried.append(f"{section.__name__}: {'; '.join(str(p) for p in problems)}")
    pytest.fail(f"{path.name}:{line} is none of the config sections:\n" + "\n".join(tried))


def test_the_example_node_file_passes_every_start_check() -> None:
    result = check_node_file(str(REPO / "examples" / "agent.yaml"))
    assert result.problems == [] and result.config is not None
    assert [c.name for c in result.config.logs.configs] == ["default"]  # type: ignore[union-attr]


def test_cli_doc_names_real_commands_and_flags(tmp_path: Path) -> None:
    helps: dict[str, str] = {}
    seen = 0
    for _, text in blocks(REPO / "docs" / "cli.md", "sh"):
        for line in text.splitlines():
            if not line.startswith("scraping-service "):
                continue
            words = line.split("#", 1)[0].split()
            command = words[1] if len(words) > 1 and not words[1].startswith("-") else "run"
            if command not in helps:
                result = run_cli("help", command, cwd=tmp_path)
                assert result.returncode == 0, f"docs/cli.md: {line!r}: {result.stderr}"
                helps[command] = result.stdout
            for flag in re.findall(r"(?<![\w.])--?[a-z][\w.-]*", line.replace("[", " ").replace("|", " ")):
                assert flag.split("=")[0] in helps[command], f"docs/cli.md: {flag} is not a flag of {command}"
            seen += 1
    assert seen >= 6


# --- the curl examples against a real node ------------------------------------------------------------


def commands(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of a shell block: `\\` continuations and heredocs joined; output is
    a `# {...}`, `# HTTP/...` or `# (...)` comment after the command or on the lines right after it."""
    out: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("# ") and out and _is_output(line[2:]):
            out[-1][1].append(line[2:])
            continue
        if not line.strip() or line.startswith("#"):
            continue
        command = line
        while command.endswith("\\") and i < len(lines):
            command = command[:-1] + lines[i].strip()
            i += 1
        heredoc = re.search(r"<<'(\w+)'", command)
        if heredoc:
            body = []
            while i < len(lines) and lines[i] != heredoc.group(1):
                body.append(lines[i])
                i += 1
            i += 1
            command += "\n" + "\n".join(body) + "\n" + heredoc.group(1)
        first = command.partition("\n")[0]
        match = re.search(r"\s{2,}# (.*)$", first)
        expected = []
        if match:
            command = first[:match.start()] + command[len(first):]
            if _is_output(match.group(1)):
                expected.append(match.group(1))
        out.append((command, expected))
    return out


def _is_output(text: str) -> bool:
    return text.startswith(("{", "HTTP/", "("))


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def matches(output: str, expected: list[str]) -> bool:
    if not expected:
        return True
    want = expected[0]
    if want.startswith("{"):
        try:
            return bool(_strip(json.loads(output)) == _strip(json.loads(want)))
        except ValueError:
            return False
    if want.startswith("HTTP/"):
        return output.splitlines()[0].strip() == want if output else False
    if want.startswith("(204"):
        return output == ""
    raise AssertionError(f"unknown expected output {want!r}")


def runnable(text: str) -> bool:
    cmds = commands(text)
    return bool(cmds) and all(c.startswith("curl ") and "localhost:12345" in c and "/api/chat" not in c
                              for c, _ in cmds)


CURL_DOCS = [REPO / "README.md", REPO / "docs" / "http-api.md", REPO / "docs" / "operations.md"]


@pytest.mark.slow
def test_curl_examples_run_against_the_example_node(tmp_path: Path) -> None:
    import snappy

    from service.proto.remote_pb2 import WriteRequest

    node = NodeProcess(tmp_path / "node", (REPO / "examples" / "agent.yaml").read_text()).start()
    # the files the examples send (`@node.yaml`, `@body.snappy`)
    (tmp_path / "node.yaml").write_text("scrape_configs:\n- job_name: team-node\n  static_configs: "
                                        "[{targets: ['127.0.0.1:9']}]\n")
    req = WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="up")
    ts.samples.add(value=1, timestamp=1_700_000_000_000)
    (tmp_path / "body.snappy").write_bytes(snappy.compress(req.SerializeToString()))
    ran = 0
    try:
        for doc in CURL_DOCS:
            for line, text in blocks(doc, "sh"):
                if not runnable(text):
                    continue
                if "instance/node/write" in text:  # the README removed "node": the write example needs it
                    assert node.request("PUT", "/agent/api/v1/config/node", "scrape_configs: []\n").status in (200, 201)
                for command, expected in commands(text):
                    command = command.replace("localhost:12345", f"127.0.0.1:{node.port}")

                    def run(command: str = command) -> subprocess.CompletedProcess[str]:
                        return subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True,
                                              text=True, timeout=30)

                    # a config stored a moment ago answers 503 until placed, and the search store commits
                    # in the background: poll until the documented answer comes
                    result = wait_for(lambda run=run, expected=expected: (
                        r if (r := run()).returncode == 0 and matches(r.stdout, expected) else None),
                        15, what=f"{doc.name}:{line}: {command.splitlines()[0]} to print {expected}")
                    assert result.returncode == 0
                    ran += 1
    finally:
        node.stop()
    assert ran >= 12
