"""The merge rules of cluster-wide log search, against a plain sort of everything (no nodes needed)."""

from __future__ import annotations

import random

from service.logs.search.cluster import locate_page, merge_pages, merge_source, merge_sources


def _node_entries(rng: random.Random, count: int) -> list[dict[str, object]]:
    """A node's entries in its own order: timestamp desc, id desc (ties on timestamp are common)."""
    entries = [{"id": str(i), "timestamp": rng.randint(0, 30), "message": f"m{i}"} for i in range(1, count + 1)]
    return sorted(entries, key=lambda e: (-int(e["timestamp"]), -int(e["id"])))


def test_pages_walk_every_entry_once_in_one_order() -> None:
    rng = random.Random(7)
    for _ in range(50):
        nodes = {f"n{i}": _node_entries(rng, rng.randint(0, 40)) for i in range(rng.randint(1, 4))}
        everything = sorted(((-int(e["timestamp"]), n, -int(e["id"])) for n, es in nodes.items() for e in es))
        limit = rng.randint(1, 9)
        walked = []
        for offset in range(0, len(everything) + limit, limit):
            window = {n: es[:offset + limit] for n, es in nodes.items()}
            one_phase = merge_pages(window, offset, limit)
            # the two-phase path: keys of the window, then each node's part of the page
            parts = locate_page(window, offset, limit)
            two_phase = merge_pages({n: nodes[n][s:s + c] for n, (s, c) in parts.items()}, 0, limit)
            assert one_phase == two_phase
            walked += [(-int(e["timestamp"]), e["node"], -int(e["id"])) for e in one_phase]
        assert walked == everything


def test_sources_merge_by_name() -> None:
    merged = merge_sources([
        [{"id": "x", "name": "api", "count": 5, "lastSeen": 10, "streams": ["stdout"]}],
        [{"id": "x", "name": "api", "count": 7, "lastSeen": 30, "streams": ["stderr"]},
         {"id": "y", "name": "db", "count": 20, "lastSeen": 5, "streams": ["stdout"]}],
        [],
    ])
    assert merged == [{"id": "y", "name": "db", "count": 20, "lastSeen": 5, "streams": ["stdout"]},
                      {"id": "x", "name": "api", "count": 12, "lastSeen": 30, "streams": ["stderr", "stdout"]}]


def test_one_source_merges_counts_times_and_label_sets() -> None:
    a = {"id": "x", "name": "api", "count": 5, "lastSeen": 10, "firstSeen": 3, "streams": ["stdout"],
         "labelSets": [{"labels": {"container": "api"}, "stream": "stdout", "count": 5, "lastSeen": 10}]}
    b = {"id": "x", "name": "api", "count": 2, "lastSeen": 40, "firstSeen": 1, "streams": ["stdout"],
         "labelSets": [{"labels": {"container": "api"}, "stream": "stdout", "count": 2, "lastSeen": 40}]}
    merged = merge_source([a, b])
    assert merged is not None
    assert (merged["count"], merged["lastSeen"], merged["firstSeen"]) == (7, 40, 1)
    assert merged["labelSets"] == [{"labels": {"container": "api"}, "stream": "stdout", "count": 7, "lastSeen": 40}]
    assert merge_source([]) is None
