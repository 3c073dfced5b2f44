"""Safe file names derived from user-chosen names (instance and consumer names)."""

from __future__ import annotations

import hashlib
import os
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_PREFIX_MAX = 40


def safe_name(name: str) -> str:
    """A readable, file-system-safe name that is unique for ``name``.

    The readable prefix keeps ``[A-Za-z0-9_.-]`` (runs of anything else become ``_``; leading dots are
    dropped so the result is never ``.``/``..`` or hidden); the suffix is a hash of the exact name, so two
    names that sanitize alike still differ.
    """
    raw = name.encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(raw).hexdigest()[:12]
    prefix = _UNSAFE.sub("_", name).lstrip(".")[:_PREFIX_MAX] or "x"
    return f"{prefix}-{digest}"


def wal_dir_for(root: str, instance_name: str) -> str:
    """The WAL directory of ``instance_name`` under ``root``; never outside ``root``."""
    root_abs = os.path.abspath(root)
    path = os.path.join(root_abs, safe_name(instance_name))
    if os.path.dirname(path) != root_abs:  # cannot happen with safe_name; a guard, not a branch
        raise ValueError(f"derived WAL directory escapes its root: {path!r}")
    return path
