"""Listing a prefix that may hold many keys (configs, claims, ring) as pages of one consistent snapshot.

The first page is read at the current revision; every later page at that same revision, starting just after
the previous page's last key. So a listing of 100k keys is a hundred short requests, none near the store's
request deadline, and still shows the prefix as it was at one revision even while writes go on. If that
revision is compacted away between two pages, the listing starts over at the new current revision.
"""

from __future__ import annotations

from service.kv.store import LIST_PAGE_SIZE, Compacted, KVPair, KVStore, ListResult

_ATTEMPTS = 3  # a compaction landing mid-listing twice in a row is already unusual


async def list_paged(store: KVStore, prefix: str, *, page_size: int = LIST_PAGE_SIZE) -> ListResult:
    """Every key under prefix through store.list_page, all at one revision."""
    for attempt in range(_ATTEMPTS):
        pairs: list[KVPair] = []
        after, revision = "", 0
        try:
            while True:
                page = await store.list_page(prefix, after=after, limit=page_size, revision=revision)
                pairs.extend(page.pairs)
                revision = page.revision
                if not page.more or not page.pairs:
                    return ListResult(pairs, revision)
                after = page.pairs[-1].key
        except Compacted:
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")
