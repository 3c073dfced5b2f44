"""``sd_entries`` (run twice per instance start, so its key names are worked out once) against the plain
definition: every non-static mechanism's entries in Prometheus' sorted key order, then the static groups."""

from __future__ import annotations

from service.metrics.config import GlobalConfig, apply_defaults, parse_instance
from service.metrics.config.discovery import SD_KEYS, STATIC_KEY, sd_entries, sd_name

BODY = """name: sd
scrape_configs:
  - job_name: many
    static_configs:
      - targets: ['127.0.0.1:9']
      - targets: ['127.0.0.1:10']
    file_sd_configs:
      - files: ['/tmp/a.json']
      - files: ['/tmp/b.json']
    dns_sd_configs:
      - names: ['example.invalid']
    http_sd_configs:
      - url: http://127.0.0.1:1/sd
  - job_name: static-only
    static_configs:
      - targets: ['127.0.0.1:9']
  - job_name: none
"""


def _plain(cfg):
    out = []
    for key in SD_KEYS:
        if key != STATIC_KEY:
            out.extend((sd_name(key), entry) for entry in getattr(cfg, key))
    if cfg.static_configs:
        out.append(("static", list(cfg.static_configs)))
    return out


def test_sd_entries_matches_the_plain_definition():
    cfg = apply_defaults(parse_instance(BODY, "sd"), GlobalConfig())
    many, static_only, none = cfg.scrape_configs
    assert [name for name, _ in sd_entries(many)] == ["dns", "file", "file", "http", "static"]
    for sc in (many, static_only, none):
        assert sd_entries(sc) == _plain(sc)
    assert sd_entries(none) == []
