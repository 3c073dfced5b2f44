"""The default single-node store: MemoryKV as the live index and watch fan-out, SQLite as the durable copy.

Every change is committed to SQLite (WAL journal, synchronous=FULL) before it is applied in memory and
acknowledged, so an acknowledged write survives a kill -9. Reads are served from memory.

SQLite calls run inline on the event loop: a committed write measured 0.2-0.4 ms (p99) including the fsync
on the target machine, and writes are rare (config API, membership). Inline also keeps revision order
trivially: no other coroutine can run between the commit and the in-memory apply.

Leases live in this process only. Keys attached to a lease are deleted when the store opens, since that
lease died with the previous process. Watch history is in memory only: after a restart a watch may start at
the current revision + 1 or later; older start revisions raise KVError (compacted), as etcd would.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from service.kv.memory import MemoryKV
from service.kv.store import KVError, KVPair, LeaseExpired

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    lease INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_UPSERT = ("INSERT INTO kv (key, value, create_revision, mod_revision, lease) VALUES (?, ?, ?, ?, ?) "
           "ON CONFLICT(key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision, "
           "lease = excluded.lease")


class EmbeddedKV(MemoryKV):
    """A persistent KVStore in one SQLite file at `path` (created with its parent directory if missing)."""

    def __init__(self, path: str, *, history_limit: int = 10_000) -> None:
        super().__init__(history_limit=history_limit)
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None

    # lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._db is None:
            self._open()
        await super().start()

    async def close(self) -> None:
        await super().close()
        if self._db is not None:
            self._db.close()
            self._db = None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise KVError(f"cannot open {self.path}: {exc}") from exc
        self._db = db
        row = db.execute("SELECT value FROM meta WHERE name = 'revision'").fetchone()
        self._revision = int(row[0]) if row else 0
        self._data = {
            key: KVPair(key, bytes(value), create, mod, lease)
            for key, value, create, mod, lease in db.execute(
                "SELECT key, value, create_revision, mod_revision, lease FROM kv")
        }
        self._history.clear()
        self._compacted = self._revision
        for key in sorted(k for k, p in self._data.items() if p.lease):
            self.apply_delete(key)  # its lease died with the previous process

    # durable apply -----------------------------------------------------------------------------------
    def _commit(self, statements: list[tuple[str, tuple[object, ...]]], revision: int) -> None:
        db = self._db
        if db is None:
            raise KVError("embedded store is not open")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    db.execute(sql, params)
                db.execute("INSERT INTO meta (name, value) VALUES ('revision', ?) "
                           "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (revision,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise KVError(f"write to {self.path} failed: {exc}") from exc

    def apply_put(self, key: str, value: bytes, lease_id: int = 0, revision: int | None = None) -> int:
        if lease_id and lease_id not in self._leases:
            raise LeaseExpired(f"lease {lease_id} not found")
        revision = revision if revision is not None else self._revision + 1
        old = self._data.get(key)
        created = old.create_revision if old else revision
        self._commit([(_UPSERT, (key, value, created, revision, lease_id))], revision)
        return super().apply_put(key, value, lease_id, revision)

    def apply_delete(self, key: str, revision: int | None = None) -> bool:
        if key not in self._data:
            return False
        revision = revision if revision is not None else self._revision + 1
        self._commit([("DELETE FROM kv WHERE key = ?", (key,))], revision)
        return super().apply_delete(key, revision)
