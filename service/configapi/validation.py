"""What a config PUT checks before storing, as one pure function, so it can run in the validation worker
(service/configapi/worker.py) instead of on the event loop."""

from __future__ import annotations

from dataclasses import dataclass

from service.config.errors import ConfigError
from service.config.yamlnodes import load_node
from service.configapi.stored import stored_yaml
from service.http.errors import HTTPError
from service.metrics.config import GlobalConfig, apply_defaults, check_reading_files, job_names, parse_instance
from service.metrics.config.discovery import sd_entries
from service.metrics.config.sdcheck import refusal, unsupported


@dataclass(frozen=True, slots=True)
class Validated:
    """An accepted body: the text to store and the job names it claims."""

    stored: str
    jobs: frozenset[str]


class Rejected(HTTPError):
    """The body is refused: the status and the envelope message (the worker sends both back as data)."""


def validate_put(body: bytes, name: str, global_cfg: GlobalConfig, allow_reading_files: bool,
                 accept_unsupported_sd: bool = False) -> Validated:
    """Parse, apply defaults and validate a PUT body (the Agent's order and wording); raises Rejected."""
    try:
        node = load_node(body)
        cfg = parse_instance(body, name, node)
    except ConfigError as exc:
        raise Rejected(400, f"could not unmarshal config: {exc}") from None
    try:
        applied = apply_defaults(cfg, global_cfg)
    except ConfigError as exc:  # the Agent's Cluster.Validate wraps only this step
        raise Rejected(400, f'failed to validate config: failed to apply defaults to "{name}": {exc}') from None
    if not accept_unsupported_sd:
        for sc in applied.scrape_configs:
            for mechanism in unsupported(sd_entries(sc)):
                raise Rejected(400, f"failed to validate config: {refusal(sc.job_name, mechanism)}")
    if not allow_reading_files:
        try:
            check_reading_files(applied)
        except ConfigError as exc:
            raise Rejected(400, f"failed to validate config: {exc}") from None
    return Validated(stored_yaml(body, name, node), frozenset(job_names(applied)))
