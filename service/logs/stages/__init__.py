"""Promtail pipeline stages: parse (json, regex), shape (labels, static_labels, labeldrop, labelallow,
output, tenant, timestamp), filter (drop, match) and container formats (docker, cri).
Importing the package registers every stage."""

from service.logs.stages import extract, filters, formats, shape, timestamp  # noqa: F401 - registers the stages
from service.logs.stages.pipeline import Pipeline

__all__ = ["Pipeline"]
