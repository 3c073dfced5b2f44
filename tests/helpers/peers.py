"""The one rule for third-party peers in tests: a peer that `make test` installs (tests/install-deps.sh) is
required. When it is missing, the test that needs it fails and says how to install it; it is never
skipped, so a broken machine cannot pass by skipping. A skip is only for what a machine cannot offer at
all (e.g. mounting a tmpfs without root), and says so."""

from __future__ import annotations

import os
import shutil


class PeerMissing(RuntimeError):
    """A peer binary the tests need is not installed."""


def require(binary: str, package: str) -> str:
    """The path of ``binary`` (a name looked up on PATH, or an absolute path); PeerMissing when absent."""
    path = binary if os.path.isabs(binary) else shutil.which(binary)
    if path is None or not os.access(path, os.X_OK):
        raise PeerMissing(f"{binary} is missing: run tests/install-deps.sh (installs Debian's {package})")
    return path
