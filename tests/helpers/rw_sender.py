"""A remote write sender process for the durability test.

    python -m tests.helpers.rw_sender URL LOG [THREADS] [BASE_MS]

Each thread posts distinct requests as fast as the receiver answers. Request k carries series labelled
`req="<k>"` with `k % 50 + 1` samples at `BASE_MS + k` (default 1_700_000_000_000); every request
answered 204 is logged to LOG as `<k> <samples>` and flushed before the next request is sent. The process
exits when the receiver stops answering.
"""

from __future__ import annotations

import http.client
import itertools
import sys
import threading
from urllib.parse import urlsplit

from tests.helpers.rw_payloads import write_body


def body_for(k: int, base_ms: int = 1_700_000_000_000) -> tuple[bytes, int]:
    n = k % 50 + 1
    series = [[("__name__", "durable"), ("req", str(k)), ("s", str(i))] for i in range(n)]
    return write_body(series, ts_ms=base_ms + k, value=float(k)), n


def main() -> int:
    url, log_path = sys.argv[1], sys.argv[2]
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    base_ms = int(sys.argv[4]) if len(sys.argv) > 4 else 1_700_000_000_000
    parts = urlsplit(url)
    counter = itertools.count()
    lock = threading.Lock()
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - closed at exit

    def run() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        while True:
            with lock:
                k = next(counter)
            body, n = body_for(k, base_ms)
            try:
                conn.request("POST", parts.path, body=body, headers={"Content-Encoding": "snappy"})
                resp = conn.getresponse()
                resp.read()
            except OSError:
                return
            if resp.status == 204:
                with lock:
                    log.write(f"{k} {n}\n")
                    log.flush()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
