"""Stages that shape the entry: labels, static_labels, labeldrop, labelallow, output and tenant."""

from __future__ import annotations

from typing import Any

from service.config.errors import ConfigError
from service.logs.stages.common import Record, Stage, check_label_name, opt_str, options, register, to_str

TENANT_LABEL = "__tenant_id__"


@register("labels")
def labels_stage(cfg: Any) -> Stage:
    if not cfg or not isinstance(cfg, dict):
        raise ConfigError("labels stage: label map is required")
    pairs = [(check_label_name("labels", name), str(src) if src else name) for name, src in cfg.items()]

    def labels_(record: Record) -> bool:
        extracted, labels = record.extracted, record.entry.labels
        for name, src in pairs:
            value = extracted.get(src)
            if value is not None:
                labels[name] = to_str(value)
        return True

    return labels_


@register("static_labels")
def static_labels_stage(cfg: Any) -> Stage:
    if not cfg or not isinstance(cfg, dict):
        raise ConfigError("static_labels stage: label map is required")
    pairs = {check_label_name("static_labels", n): to_str(v) for n, v in cfg.items() if v not in (None, "")}

    def static_labels_(record: Record) -> bool:
        record.entry.labels.update(pairs)
        return True

    return static_labels_


def _names(stage: str, cfg: Any) -> list[str]:
    if not cfg or not isinstance(cfg, list):
        raise ConfigError(f"{stage} stage: a list of label names is required")
    return [check_label_name(stage, n) for n in cfg]


@register("labeldrop")
def labeldrop_stage(cfg: Any) -> Stage:
    names = _names("labeldrop", cfg)

    def labeldrop_(record: Record) -> bool:
        for name in names:
            record.entry.labels.pop(name, None)
        return True

    return labeldrop_


@register("labelallow")
def labelallow_stage(cfg: Any) -> Stage:
    allowed = set(_names("labelallow", cfg))

    def labelallow_(record: Record) -> bool:
        labels = record.entry.labels
        for name in [n for n in labels if n not in allowed]:
            del labels[name]
        return True

    return labelallow_


@register("output")
def output_stage(cfg: Any) -> Stage:
    cfg = options("output", cfg, ("source",))
    source = opt_str("output", cfg, "source")
    if not source:
        raise ConfigError("output stage: output source value is required")

    def output_(record: Record) -> bool:
        value = record.extracted.get(source)
        if value is not None:
            record.entry.line = to_str(value)
        return True

    return output_


@register("tenant")
def tenant_stage(cfg: Any) -> Stage:
    """Sets the entry's tenant, carried as the `__tenant_id__` label (the Loki client turns it into
    X-Scope-OrgID) from an extracted value (`source`), a label (`label`) or a constant (`value`)."""
    cfg = options("tenant", cfg, ("source", "value", "label"))
    source, value, label = (opt_str("tenant", cfg, k) for k in ("source", "value", "label"))
    given = sum(bool(x) for x in (source, value, label))
    if given == 0:
        raise ConfigError("tenant stage: source, value or label config are required")
    if given > 1:
        raise ConfigError("tenant stage: source, value and label are mutually exclusive: set only one")

    def tenant_(record: Record) -> bool:
        if value:
            tenant = value
        elif source:
            tenant = to_str(record.extracted.get(source))
        else:
            tenant = record.entry.labels.get(label, "")
        if tenant:
            record.entry.labels[TENANT_LABEL] = tenant
        return True

    return tenant_
