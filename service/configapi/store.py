"""Named instance configs stored in the KV store under a prefix, in Grafana Agent's format.

Values are gzip-compressed YAML, as the agent writes them (codec `agentConfig/yaml`), so a store the agent
filled is read as it is and the agent could read ours. Plain YAML values are accepted too.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import Callable

from service.config.errors import ConfigError
from service.kv.store import KVPair, KVStore

_GZIP_MAGIC = b"\x1f\x8b"


class UniquenessError(ConfigError):
    pass


def encode_value(yaml_text: str) -> bytes:
    return gzip.compress(yaml_text.encode("utf-8"), compresslevel=6, mtime=0)


def decode_value(raw: bytes) -> str:
    if raw[:2] == _GZIP_MAGIC:
        raw = gzip.decompress(raw)
    return raw.decode("utf-8")


class ConfigStore:
    """CRUD of configs by name, plus the cross-config job_name uniqueness check.

    `job_names_of(yaml_text, name)` extracts a stored config's job names; results are cached per key and
    mod_revision so a PUT costs one listing, not a re-parse of every config.
    """

    def __init__(self, kv: KVStore, prefix: str, job_names_of: Callable[[str, str], set[str]]) -> None:
        self.kv = kv
        self.prefix = prefix
        self._job_names_of = job_names_of
        self._jobs_cache: dict[str, tuple[int, frozenset[str]]] = {}
        self._write_lock = asyncio.Lock()

    def key(self, name: str) -> str:
        return self.prefix + name

    def name_of(self, key: str) -> str:
        return key[len(self.prefix):]

    async def names(self) -> list[str]:
        listing = await self.kv.list(self.prefix)
        return sorted(self.name_of(p.key) for p in listing.pairs)

    async def get(self, name: str) -> str | None:
        pair = await self.kv.get(self.key(name))
        return None if pair is None else decode_value(pair.value)

    async def all(self) -> dict[str, str]:
        listing = await self.kv.list(self.prefix)
        return {self.name_of(p.key): decode_value(p.value) for p in listing.pairs}

    async def put(self, name: str, yaml_text: str, job_names: set[str]) -> bool:
        """Store a config; True when it was created, False when it replaced one.

        Raises UniquenessError when another stored config already uses one of `job_names`."""
        key = self.key(name)
        value = encode_value(yaml_text)
        async with self._write_lock:
            while True:
                listing = await self.kv.list(self.prefix)
                if any(not self._jobs_cached(p) for p in listing.pairs if p.key != key):
                    # other configs parsed off the event loop: one may take seconds
                    await asyncio.to_thread(self._fill_jobs, [p for p in listing.pairs if p.key != key])
                current = None
                for pair in listing.pairs:
                    if pair.key == key:
                        current = pair
                        continue
                    clash = job_names & self._jobs(pair)
                    if clash:
                        job = sorted(clash)[0]
                        raise UniquenessError(
                            f'found multiple scrape configs in config store with job name "{job}"'
                        )
                expected = current.mod_revision if current else 0
                if await self.kv.compare_and_swap(key, value, expected_mod_revision=expected):
                    self._forget_missing({p.key for p in listing.pairs})
                    return current is None

    async def delete(self, name: str) -> bool:
        async with self._write_lock:
            self._jobs_cache.pop(self.key(name), None)
            return await self.kv.delete(self.key(name))

    def _fill_jobs(self, pairs: list[KVPair]) -> None:
        for pair in pairs:
            self._jobs(pair)

    def _jobs_cached(self, pair: KVPair) -> bool:
        cached = self._jobs_cache.get(pair.key)
        return cached is not None and cached[0] == pair.mod_revision

    def _jobs(self, pair: KVPair) -> frozenset[str]:
        cached = self._jobs_cache.get(pair.key)
        if cached is not None and cached[0] == pair.mod_revision:
            return cached[1]
        try:
            jobs = frozenset(self._job_names_of(decode_value(pair.value), self.name_of(pair.key)))
        except (ConfigError, ValueError, OSError, EOFError, zlib.error):
            jobs = frozenset()  # an unreadable stored config claims no job names
        self._jobs_cache[pair.key] = (pair.mod_revision, jobs)
        return jobs

    def _forget_missing(self, live_keys: set[str]) -> None:
        for key in [k for k in self._jobs_cache if k not in live_keys]:
            del self._jobs_cache[key]
