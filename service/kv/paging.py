"""Listing a prefix that may hold many keys (configs, claims, ring) as pages of one consistent snapshot.

The first page is read at the current revision; every later page at that same revision, starting just after
the previous page's last key. So a listing of 100k keys is a few short requests, none near the store's
request deadline, and still shows the prefix as it was at one revision even while writes go on. If that
revision is compacted away between two pages, the listing starts over at the new current revision.
"""

from __future__ import annotations

from service.kv.store import LIST_PAGE_SIZE, Compacted, KVPair, KVStore, ListResult

_ATTEMPTS = 3  # a compaction landing mid-listing twice in a row is already unusual
# After the first page, pages are sized to about PAGE_BYTES from the sizes seen so far, between the first
# page's size and MAX_PAGE keys. Fewer pages matter: etcd 3.4 walks its index over the whole rest of the
# range for every page, whatever the limit, so listing n keys in pages of p costs it ~n²/2p index steps. At
# 100k small configs, pages of 1,000 took ~0.1-0.5 s each (22 s per listing, ten nodes listing at once ran
# past reshard_timeout); pages of 10,000 walk a tenth of that.
PAGE_BYTES = 4 * 1024 * 1024
MAX_PAGE = 10_000


def next_page_size(pairs: list[KVPair], first: int) -> int:
    """Keys for the next page: ~PAGE_BYTES at the average size of `pairs`, within [first, MAX_PAGE]."""
    if not pairs:
        return first
    average = sum(len(p.key) + len(p.value) for p in pairs) / len(pairs)
    return max(first, min(MAX_PAGE, int(PAGE_BYTES / max(average, 1.0))))


async def list_paged(store: KVStore, prefix: str, *, page_size: int = LIST_PAGE_SIZE,
                     max_page: int = MAX_PAGE) -> ListResult:
    """Every key under prefix through store.list_page, all at one revision."""
    for attempt in range(_ATTEMPTS):
        pairs: list[KVPair] = []
        after, revision, limit = "", 0, page_size
        try:
            while True:
                page = await store.list_page(prefix, after=after, limit=limit, revision=revision)
                pairs.extend(page.pairs)
                revision = page.revision
                if not page.more or not page.pairs:
                    return ListResult(pairs, revision)
                after = page.pairs[-1].key
                limit = min(max_page, next_page_size(page.pairs, page_size))
        except Compacted:
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")
