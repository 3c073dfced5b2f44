"""The YAML shown back for an instance config: Prometheus' field order, zero values of `omitempty`
fields left out as Go leaves them out, and every secret shown as `<secret>`, including the ones inside
discovery and sigv4/azuread blocks we keep as opaque data."""

from __future__ import annotations

from typing import Any

import yaml

from service.config.schema import encode
from service.config.secrets import mask_secret_keys
from service.metrics.config.discovery import SD_KEYS, STATIC_KEY
from service.metrics.config.instance import InstanceConfig

# Fields Go marshals with `omitempty` whose zero value is False or 0.
OMIT_ZERO = frozenset({
    "host_filter", "write_stale_on_shutdown", "honor_labels", "sample_limit", "target_limit",
    "label_limit", "label_name_length_limit", "label_value_length_limit", "send_native_histograms",
    "proxy_from_environment", "port", "modulus", "sharding",
})
OPAQUE_KEYS = frozenset({*(k for k in SD_KEYS if k != STATIC_KEY), "sigv4", "azuread"}) - {
    "dns_sd_configs", "file_sd_configs", "http_sd_configs"}


def render_instance(cfg: InstanceConfig) -> str:
    """Canonical YAML of cfg (pass it through apply_defaults first to show the defaults)."""
    data = _prune(encode(cfg))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _prune(value: Any) -> Any:
    if isinstance(value, list):
        return [_prune(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in OMIT_ZERO and item in (0, False, "") and item is not None:
            continue
        out[key] = mask_secret_keys(item) if key in OPAQUE_KEYS else _prune(item)
    return out
