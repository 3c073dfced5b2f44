"""Micro benchmark of the remote write codec on one 2000-series x 1-sample payload with ~10 Kubernetes-like
labels per series (a typical Prometheus remote write payload).

Run from the repository root:  python -m bench.codec   (pin a core for stable figures: taskset -c 0 ...)
Prints samples/s for decode+validate, the receiver's check of a body (SeriesChecker), hand-encode (from
cached label bytes, with snappy) and re-encode with external labels (stored snappy body in, snappy body
out, label cache warm), best of several rounds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import snappy

from service.metrics.remote.codec import decode_write_request, encode_labels, encode_timeseries
from service.metrics.remote.rewrite import SeriesRewriter
from service.relabel import RelabelConfig

SERIES = 2000
ROUND_SECONDS = 0.7
ROUNDS = 3


def build_series(n: int, seed: int = 1) -> list[list[tuple[str, str]]]:
    """n label sets (sorted) shaped like kube-state / cadvisor series: ~9.7 labels, realistic lengths."""
    rng = random.Random(seed)
    names = ["container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
             "kube_pod_container_status_restarts_total", "http_request_duration_seconds_bucket",
             "node_network_receive_bytes_total"]
    pods = []
    for _ in range(max(1, n // 10)):  # ~10 series per pod, as a scrape of one pod yields many series
        uid = f"{rng.getrandbits(128):032x}"
        pods.append({
            "namespace": f"team-{rng.randrange(40):02d}-prod",
            "pod": f"api-gateway-{rng.getrandbits(40):010x}-{rng.getrandbits(20):05x}",
            "uid": uid,
            "instance": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}:10250",
            "node": f"ip-10-0-{rng.randrange(256)}-{rng.randrange(256)}.eu-west-1.compute.internal",
            "id": f"/kubepods/burstable/pod{uid}/{rng.getrandbits(64):016x}",
        })
    out = []
    for i in range(n):
        labels = {
            "__name__": names[i % len(names)],
            "container": "app" if i % 3 else "istio-proxy",
            "job": "kubernetes-cadvisor",
            **pods[i % len(pods)],
        }
        if i % 10 < 7:
            labels["le"] = str(rng.choice([0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, "+Inf"]))
        out.append(sorted(labels.items()))
    return out


def bench(name: str, fn: Callable[[], object], samples: int) -> float:
    best = 0.0
    for _ in range(ROUNDS):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < ROUND_SECONDS:
            fn()
            calls += 1
        best = max(best, calls * samples / elapsed)
    print(f"{name:<58} {best / 1e3:9.0f}k samples/s  ({best / samples:8.0f} req/s)")
    return best


def main() -> None:
    series = build_series(SERIES)
    ts_ms = 1_700_000_000_000
    label_cache = [encode_labels(labels) for labels in series]
    raw = b"".join(encode_timeseries(lb, [(ts_ms, float(i))]) for i, lb in enumerate(label_cache))
    body = snappy.compress(raw)
    labels_per_series = sum(map(len, series)) / len(series)
    print(f"payload: {SERIES} series x 1 sample, {labels_per_series:.1f} labels/series, "
          f"raw {len(raw)} B ({len(raw) / SERIES:.0f} B/sample), snappy {len(body)} B")

    bench("decode + validate (preamble, snappy, upb parse, counts)",
          lambda: decode_write_request(body, 32 << 20), SERIES)

    from service.metrics.ingest import SeriesChecker
    checker = SeriesChecker()
    checker.decode(body, 32 << 20)  # label sets seen, as a long-running receiver has seen them
    bench("receiver check: wire format, counts, label-set keys (warm)", lambda: checker.decode(body, 32 << 20),
          SERIES)

    def hand_encode() -> bytes:
        return snappy.compress(b"".join([encode_timeseries(lb, [(ts_ms, 1.5)]) for lb in label_cache]))
    bench("hand-encode from cached label bytes + snappy", hand_encode, SERIES)

    rewriter = SeriesRewriter({"cluster": "eu-west-1", "replica": "a"})
    rewriter.rewrite_compressed(body)  # warm the label cache, as a long-running sender's is
    bench("re-encode with external labels (snappy in and out)",
          lambda: rewriter.rewrite_compressed(body), SERIES)

    drop = RelabelConfig(source_labels=["container"], regex="istio-proxy", action="drop")
    with_rules = SeriesRewriter({"cluster": "eu-west-1"}, [drop])
    with_rules.rewrite_compressed(body)
    bench("re-encode with external labels + write_relabel drop", lambda: with_rules.rewrite_compressed(body),
          SERIES)

    cold = SeriesRewriter({"cluster": "eu-west-1"}, max_cached_series=0)
    bench("re-encode, label cache cold (every series relabeled)",
          lambda: cold.rewrite_compressed(body), SERIES)


if __name__ == "__main__":
    main()
