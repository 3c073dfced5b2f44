"""Logs: Loki push receiver, logs WAL, and forwarding to Loki (Promtail / ``loki.write`` semantics).

``config`` (the ``logs:`` block), ``labels`` (label strings), ``push`` (decoding pushes), ``record`` (the
WAL record), ``instance`` (one logs config: WAL + clients + listeners), ``manager`` (all of them),
``client``/``batch`` (sending to Loki), ``routes`` (HTTP), ``server`` (per-``loki_push_api`` listeners).
"""
