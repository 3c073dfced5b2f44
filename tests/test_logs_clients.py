"""Real third-party Loki push clients against a node: python-logging-loki (JSON), loki-logger-handler
(gzip JSON + structured metadata) and winston-loki under node (protobuf + snappy, unsorted labels).

The clients are installed at test time into a cached temporary venv / npm prefix, never into the
project's dependencies. A failed install fails the test (tests/helpers/peers.py: what `make test` installs is
required, never skipped).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers.logs_node import node_yaml
from tests.helpers.loki_capture import LokiCapture
from tests.helpers.node_process import NodeProcess, free_port, wait_for

CACHE = Path(tempfile.gettempdir()) / "scraping-service-loki-clients"


def _venv() -> Path:
    venv = CACHE / "venv"
    py = venv / "bin" / "python"
    if not (venv / ".ok").exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120,
                           capture_output=True)
            subprocess.run([str(py), "-m", "pip", "install", "-q", "python-logging-loki", "loki-logger-handler"],
                           check=True, timeout=300, capture_output=True)
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.fail(f"cannot install the Python Loki clients from PyPI: {exc}")
        (venv / ".ok").touch()
    return py


def _npm() -> Path:
    prefix = CACHE / "npm"
    if not (prefix / ".ok").exists():
        prefix.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix),
                            "winston@3", "winston-loki@6.1.7"], check=True, timeout=300, capture_output=True)
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.fail(f"npm cannot install winston-loki: {exc}")
        (prefix / ".ok").touch()
    return prefix


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    with LokiCapture() as loki:
        node = NodeProcess(tmp_path_factory.mktemp("clients"), node_yaml(loki.url, free_port())).start()
        try:
            yield node, loki
        finally:
            node.stop()


def _run(cmd: list[str], **kw: object) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload]
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_python_logging_loki_json(setup) -> None:
    node, loki = setup
    py = _venv()
    script = f"""
import logging, logging_loki
h = logging_loki.LokiHandler(url="http://127.0.0.1:{node.port}/loki/api/v1/push", tags={{"app": "pyl"}},
                             version="1", headers={{"X-Scope-OrgID": "py"}} if "headers" in
                             logging_loki.LokiHandler.__init__.__code__.co_varnames else None)
log = logging.getLogger("t"); log.addHandler(h); log.setLevel(logging.INFO)
for i in range(3): log.info("pyl-%d", i)
"""
    script = script.replace(', headers={"X-Scope-OrgID": "py"} if "headers" in\n'
                            '                             logging_loki.LokiHandler.__init__.__code__.co_varnames '
                            'else None', "")
    _run([str(py), "-c", script])
    wait_for(lambda: {"pyl-0", "pyl-1", "pyl-2"} <= set(loki.capture.lines()), 10, what="python-logging-loki lines")
    e = next(x for x in loki.capture.entries if x.line == "pyl-0")
    assert 'app="pyl"' in e.labels and 'severity="info"' in e.labels and 'pushserver="api"' in e.labels


def test_loki_logger_handler_gzip_metadata(setup) -> None:
    node, loki = setup
    py = _venv()
    script = f"""
import logging, time
from loki_logger_handler.loki_logger_handler import LokiLoggerHandler
h = LokiLoggerHandler(url="http://127.0.0.1:{node.port}/loki/api/v1/push", labels={{"app": "llh"}},
                      timeout=5, enable_structured_loki_metadata=True, loki_metadata={{"trace": "abc"}})
log = logging.getLogger("llh"); log.addHandler(h); log.setLevel(logging.INFO)
log.info("llh-line")
h.flush() if hasattr(h, "flush") else None
time.sleep(0.1)
"""
    _run([str(py), "-c", script])
    wait_for(lambda: any("llh-line" in x for x in loki.capture.lines()), 15, what="loki-logger-handler line")
    e = next(x for x in loki.capture.entries if "llh-line" in x.line)
    assert 'app="llh"' in e.labels
    assert ("trace", "abc") in e.metadata


def test_winston_loki_protobuf_unsorted_labels(setup, tmp_path: Path) -> None:
    node, loki = setup
    prefix = _npm()
    js = tmp_path / "push.js"
    js.write_text(f"""
const {{ createLogger }} = require('winston');
const LokiTransport = require('winston-loki');
const t = new LokiTransport({{ host: 'http://127.0.0.1:{node.port}', labels: {{ zeta: 'z', app: 'win' }},
  headers: {{ 'X-Scope-OrgID': 'wt' }}, batching: false,
  onConnectionError: (e) => {{ console.error(e); process.exit(2); }} }});
const logger = createLogger({{ transports: [t] }});
logger.info('win-1', {{ labels: {{ extra: 'y' }} }});
logger.info('win-2');
setTimeout(() => process.exit(0), 1500);
""")
    _run(["node", str(js)], env={"NODE_PATH": str(prefix / "node_modules"), "PATH": "/usr/bin:/bin"})
    def lines() -> set[str]:  # winston-loki appends the metadata: 'win-1 {"level":"info"}'
        return {line.split(" ", 1)[0] for line in loki.capture.lines()}

    wait_for(lambda: {"win-1", "win-2"} <= lines(), 10, what="winston-loki lines")
    e = next(x for x in loki.capture.entries if x.line.startswith("win-1"))
    assert e.tenant == "wt"
    assert e.labels.startswith('{app="win", ') and 'zeta="z"' in e.labels and 'level="info"' in e.labels
