"""`GET /api/openapi.json`: an OpenAPI 3.1 document of every endpoint of docs/http-api.md (ours).

Written out by hand from the spec rather than derived from the routes, so the document states the contract
and a test (tests/test_openapi.py) checks that the served routes and the document name the same operations.
CI fuzzes a live node with it (tests/fuzz/test_schemathesis.py).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import __version__

PATH = "/api/openapi.json"
Schema = dict[str, Any]

# --- shared shapes -------------------------------------------------------------------------------------------

_STR: Schema = {"type": "string"}
_INT: Schema = {"type": "integer"}
_NAMES: Schema = {"type": "array", "items": _STR}
_OBJ: Schema = {"type": "object"}
_LABELS: Schema = {"type": "object", "additionalProperties": _STR}

COMPONENTS: Schema = {
    "schemas": {
        "AgentError": {"type": "object", "required": ["status", "data"], "properties": {
            "status": {"const": "error"},
            "data": {"type": "object", "required": ["error"], "properties": {"error": _STR}}}},
        "AgentSuccess": {"type": "object", "required": ["status"], "properties": {"status": {"const": "success"}}},
        "SearchError": {"type": "object", "required": ["success", "error", "code"], "properties": {
            "success": {"const": False}, "error": _STR,
            "code": {"enum": ["INVALID_PARAMETER", "NOT_FOUND", "INTERNAL_ERROR", "SERVICE_UNAVAILABLE"]}}},
        "MetricsTarget": {"type": "object", "properties": {
            "instance": _STR, "target_group": _STR, "endpoint": _STR,
            "state": {"enum": ["up", "down", "unknown"]}, "discovered_labels": _LABELS, "labels": _LABELS,
            "last_scrape": _STR, "scrape_duration_ms": {"type": "number"}, "scrape_error": _STR}},
        "LogEntry": {"type": "object", "required": ["id", "timestamp", "message"], "properties": {
            "id": {}, "timestamp": _INT, "container": _STR, "stream": _STR, "labels": _LABELS,
            "message": _STR}},
        "PushJSON": {"type": "object", "required": ["streams"], "properties": {"streams": {
            "type": "array", "items": {"type": "object", "required": ["stream", "values"], "properties": {
                "stream": _LABELS,
                "values": {"type": "array", "items": {"type": "array", "minItems": 2, "maxItems": 3,
                                                      "prefixItems": [_STR, _STR, _LABELS]}}}}}}},
    },
    "securitySchemes": {  # only when the node file sets server.http_auth
        "basicAuth": {"type": "http", "scheme": "basic"},
        "bearerAuth": {"type": "http", "scheme": "bearer"},
    },
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text(description: str) -> Schema:
    return {"description": description, "content": {"text/plain": {"schema": _STR}}}


def _empty(description: str) -> Schema:
    return {"description": description}


def _agent_ok(data: Schema | None, description: str = "success") -> Schema:
    props: Schema = {"status": {"const": "success"}}
    if data is not None:
        props["data"] = data
    return _json({"type": "object", "required": ["status"], "properties": props}, description)


def _agent_err(description: str) -> Schema:
    return _json(_ref("AgentError"), description)


def _search_ok(data: Schema) -> Schema:
    return _json({"type": "object", "required": ["success", "data"],
                  "properties": {"success": {"const": True}, "data": data}}, "success")


def _search_err(description: str) -> Schema:
    return _json(_ref("SearchError"), description)


def _path_param(name: str, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1}}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _op(summary: str, responses: dict[int | str, Schema], tag: str, **extra: Any) -> Schema:
    return {"summary": summary, "tags": [tag], "responses": {str(k): v for k, v in responses.items()}, **extra}


# --- §1 config management API -----------------------------------------------------------------------------

_CONFIG_NAME = _path_param("name", "config name, URL-decoded (`a%2Fb` is `a/b`)")
_UNREACHABLE = {503: _agent_err("the KV store is unreachable (retry)")}
_YAML_BODY = {"required": True, "content": {
    "application/yaml": {"schema": {"type": "string", "description": "one metrics instance config (YAML)"}}}}

_CONFIG_API: Schema = {
    "/agent/api/v1/configs": {"get": _op("List stored config names", {
        200: _agent_ok({"type": "object", "required": ["configs"], "properties": {"configs": _NAMES}}),
        **_UNREACHABLE}, "config")},
    "/agent/api/v1/configs/{name}": {"get": _op("Read one stored config, defaults applied, secrets masked", {
        200: _agent_ok({"type": "object", "required": ["value"], "properties": {"value": _STR}}),
        400: _agent_err("the name does not decode (bad escape, control characters)"),
        404: _agent_err("unknown config (or the read API is disabled: plain text)"), **_UNREACHABLE},
        "config", parameters=[_CONFIG_NAME])},
    "/agent/api/v1/config/{name}": {
        "put": _op("Create (201) or overwrite (200) a config", {
            200: _agent_ok(None, "overwritten"), 201: _agent_ok(None, "created"),
            400: _agent_err("could not unmarshal / failed to validate / uniqueness"),
            413: _agent_err("body over the size limit"), **_UNREACHABLE},
            "config", parameters=[_CONFIG_NAME], requestBody=_YAML_BODY),
        "post": _op("Same as PUT", {
            200: _agent_ok(None, "overwritten"), 201: _agent_ok(None, "created"),
            400: _agent_err("could not unmarshal / failed to validate / uniqueness"),
            413: _agent_err("body over the size limit"), **_UNREACHABLE},
            "config", parameters=[_CONFIG_NAME], requestBody=_YAML_BODY),
        "delete": _op("Delete a config", {
            200: _agent_ok(None), 400: _agent_err("the name does not decode (bad escape, control characters)"),
            404: _agent_err("configuration <name> does not exist"), **_UNREACHABLE},
            "config", parameters=[_CONFIG_NAME]),
    },
}

# --- §2 agent API, ring API and ops endpoints ---------------------------------------------------------------

_BINARY_BODY = {"required": True, "content": {"application/x-protobuf": {"schema": {
    "type": "string", "format": "binary", "description": "snappy-block compressed prometheus.WriteRequest"}}}}
_INSTANCES = {"get": _op("Names of the metrics instances running on this node", {200: _agent_ok(_NAMES)},
                         "agent")}
_TARGETS = {"get": _op("This node's scrape targets", {
    200: _agent_ok({"type": "array", "items": _ref("MetricsTarget")})}, "agent")}

_AGENT_API: Schema = {
    "/agent/api/v1/metrics/instances": _INSTANCES,
    "/agent/api/v1/instances": _INSTANCES,
    "/agent/api/v1/metrics/targets": _TARGETS,
    "/agent/api/v1/targets": _TARGETS,
    "/agent/api/v1/metrics/instance/{instance}/write": {"post": _op(
        "Prometheus remote_write into the instance's WAL (forwarded when another node runs it)", {
            204: _empty("appended and fsynced"), 400: _text("bad payload or unknown instance"),
            404: _text("no instance segment in the path"), 413: _text("body or decoded size over the limit"),
            500: _text("WAL append failed"), 503: _text("the instance is not placed yet or the store is "
                                                      "unreachable (Retry-After)")},
        "agent", parameters=[_path_param("instance", "metrics instance name, URL-decoded")],
        requestBody=_BINARY_BODY)},
    "/agent/api/v1/logs/instances": {"get": _op("Names of the logs instances", {200: _agent_ok(_NAMES)},
                                                "agent")},
    "/agent/api/v1/logs/targets": {"get": _op("Log targets of this node", {
        200: _agent_ok({"type": "array", "items": _OBJ})}, "agent")},
    "/agent/api/v1/metrics/integrations/sd": {"get": _op("Integrations in Prometheus http_sd format", {
        200: _json({"type": "array", "items": {"type": "object", "properties": {
            "targets": _NAMES, "labels": _LABELS}}}, "a bare JSON array")},
        "agent", parameters=[_query("integrations", _STR, "comma-separated integration names"),
                             _query("instance", _STR, "instance label value")])},
    "/agent/api/v1/metrics/integrations/targets": {"get": _op("Integration targets", {
        200: _agent_ok({"type": "array", "items": _ref("MetricsTarget")})}, "agent")},
    "/agent/api/v1/cluster/ring": {"get": _op("Ring members and the owner of every config", {
        200: _agent_ok({"type": "object", "required": ["self", "members", "configs"], "properties": {
            "self": _STR,
            "members": {"type": "array", "items": {"type": "object", "properties": {
                "id": _STR, "address": _STR, "state": _STR, "heartbeat": {"type": "number"}, "owned": _INT}}},
            "configs": {"type": "array", "items": {"type": "object", "properties": {
                "name": _STR, "owner": _STR, "running": {"type": "boolean"}, "running_on": _STR,
                "sharding": _STR, "targets": {"type": "object", "additionalProperties": _INT}}}}}}),
        404: _agent_err("scraping service is not enabled"), 500: _agent_err("KV store error"),
        **_UNREACHABLE}, "ring")},
    "/agent/api/v1/cluster/reshard": {"post": _op("Reshard now", {
        200: _agent_ok(_OBJ), 404: _agent_err("scraping service is not enabled"),
        503: _agent_err("reshard failed")}, "ring")},
    "/-/reload": {
        "get": _op("Re-read the node config file", {
            200: _empty("applied"), 400: _empty("malformed or invalid file; the running config stays")}, "ops"),
        "post": _op("Re-read the node config file", {
            200: _empty("applied"), 400: _empty("malformed or invalid file; the running config stays")}, "ops"),
    },
    "/-/config": {"get": _op("The running node config as YAML, secrets masked", {
        200: {"description": "YAML", "content": {"text/plain": {"schema": _STR}}},
        404: _text("config endpoint is disabled")}, "ops")},
    "/-/ready": {"get": _op("Readiness", {200: _text("Agent is Ready."),
                                          503: _text("Metrics are not ready yet.")}, "ops", security=[])},
    "/-/healthy": {"get": _op("Liveness", {200: _text("Agent is Healthy.")}, "ops", security=[])},
    "/metrics": {"get": _op("Self metrics, Prometheus text format", {200: _text("exposition")}, "ops")},
    PATH: {"get": _op("This document", {200: _json(_OBJ, "OpenAPI 3.1")}, "ops")},
}

# --- §3 Loki push receiver ----------------------------------------------------------------------------------

_PUSH_BODY = {"required": True, "content": {
    "application/x-protobuf": {"schema": {"type": "string", "format": "binary",
                                          "description": "snappy-block compressed logproto.PushRequest"}},
    "application/json": {"schema": _ref("PushJSON")}}}
_RAW_BODY = {"required": True, "content": {"text/plain": {"schema": {
    "type": "string", "description": "newline-delimited lines, each an entry stamped now"}}}}
_PUSH_ANSWERS: dict[int | str, Schema] = {
    204: _empty("accepted and durable"), 400: _text("the reason (bad body, timestamp, labels, instance)"),
    413: _text("body over the size limit"), 429: _text("overloaded (Retry-After)"),
    500: _text("WAL append failed"), 503: _text("downstream full (Retry-After)")}
_TENANT = {"name": "X-Scope-OrgID", "in": "header", "required": False, "schema": _STR,
           "description": "tenant"}
_ENCODING = {"name": "Content-Encoding", "in": "header", "required": False,
             "schema": {"enum": ["snappy", "gzip", "deflate"]}}


def _push(summary: str, body: Schema, *params: Schema) -> Schema:
    return {"post": _op(summary, _PUSH_ANSWERS, "loki", parameters=[_TENANT, *params], requestBody=body)}


_LOG_NAME = _path_param("name", "logs instance name")
_LOKI: Schema = {
    "/loki/api/v1/push": _push("Loki push to the default logs instance", _PUSH_BODY, _ENCODING),
    "/api/v1/push": _push("Loki push to the default logs instance", _PUSH_BODY, _ENCODING),
    "/loki/api/v1/raw": _push("Raw lines to the default logs instance", _RAW_BODY),
    "/api/v1/raw": _push("Raw lines to the default logs instance", _RAW_BODY),
    "/agent/api/v1/logs/instance/{name}/push": _push("Loki push to a named logs instance", _PUSH_BODY,
                                                     _LOG_NAME, _ENCODING),
    "/agent/api/v1/logs/instance/{name}/raw": _push("Raw lines to a named logs instance", _RAW_BODY, _LOG_NAME),
    "/ready": {"get": _op("Loki receiver readiness", {200: _text("ready")}, "loki", security=[])},
}

# --- §4 log search API -------------------------------------------------------------------------------------

_MS: Schema = {"type": "integer", "minimum": 0}
_FILTERS = [
    _query("query", _STR, "words; empty matches all"),
    _query("fromTimestamp", _MS, "Unix ms, inclusive"),
    _query("toTimestamp", _MS, "Unix ms, inclusive"),
    _query("container", _STR, "log source name"),
    _query("containerId", _STR, "log source id"),
    _query("stream", {"enum": ["stdout", "stderr"]}, "stdout or stderr"),
    _query("scope", {"enum": ["local"]}, "answer for this node alone"),
]
_SEARCH_ERRORS = {400: _search_err("INVALID_PARAMETER"), 503: _search_err("SERVICE_UNAVAILABLE")}
_SOURCES = {"type": "array", "items": {"type": "object", "properties": {
    "name": _STR, "count": _INT, "lastSeen": {}, "id": _STR}}}

_SEARCH: Schema = {
    "/api/status": {"get": _op("Health of the node and its parts", {200: _search_ok(_OBJ)}, "search")},
    "/api/version": {"get": _op("Name and version", {200: _search_ok({"type": "object", "properties": {
        "name": _STR, "version": _STR}})}, "search")},
    "/api/logs/search": {"get": _op("Search logs, newest first", {
        200: _search_ok({"type": "object", "required": ["total", "returned", "logs"], "properties": {
            "total": _INT, "returned": _INT, "logs": {"type": "array", "items": _ref("LogEntry")}}}),
        **_SEARCH_ERRORS}, "search", parameters=[
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "page size (default 50)"),
            _query("offset", {"type": "integer", "minimum": 0}, "entries to skip"), *_FILTERS])},
    "/api/logs/histogram": {"get": _op("Counts per time bucket", {
        200: _search_ok({"type": "object", "required": ["buckets", "total"], "properties": {
            "buckets": {"type": "array", "items": {"type": "object", "properties": {
                "timestamp": _INT, "count": _INT}}}, "total": _INT}}),
        **_SEARCH_ERRORS}, "search", parameters=[
            _query("minutes", {"type": "integer", "minimum": 1}, "window back from now (default 60)"),
            _query("bucket", {"type": "integer", "minimum": 1}, "bucket size in ms"), *_FILTERS])},
    "/api/logs/containers": {"get": _op("Log sources with counts", {200: _search_ok(_SOURCES),
                                                                    **_SEARCH_ERRORS}, "search")},
    "/api/containers": {"get": _op("Log sources", {200: _search_ok(_SOURCES), **_SEARCH_ERRORS}, "search")},
    "/api/containers/{id}": {"get": _op("One log source", {
        200: _search_ok(_OBJ), 404: _search_err("NOT_FOUND"), **_SEARCH_ERRORS}, "search",
        parameters=[_path_param("id", "source id or exact name")])},
    "/api/chat": {"post": _op("Questions about the logs, answered from tool calls", {
        200: _search_ok(_OBJ), **_SEARCH_ERRORS}, "search", requestBody={"required": True, "content": {
            "application/json": {"schema": {"type": "object", "required": ["messages"], "properties": {
                "messages": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["role", "content"], "properties": {
                        "role": {"enum": ["user", "assistant"]}, "content": _STR}}}}}}}})},
}


_SCOPE = _query("scope", {"enum": ["cluster", "local"]}, "cluster (default): every ACTIVE node; local: this node")
_UI: Schema = {
    "/": {"get": _op("Redirect to the web UI", {302: _empty("to /ui/")}, "ui")},
    "/ui": {"get": _op("Redirect to the web UI", {302: _empty("to /ui/")}, "ui")},
    "/ui/": {"get": _op("The web UI (HTML; its assets are under /ui/static/)", {
        200: {"description": "the page", "content": {"text/html": {"schema": _STR}}}}, "ui")},
    "/ui/api/targets": {"get": _op("Every ACTIVE node's scrape targets, for the UI", {
        200: _agent_ok({"type": "object", "properties": {
            "node": _STR, "targets": {"type": "array", "items": _ref("MetricsTarget")},
            "partial": {"type": "boolean"}, "missingNodes": _NAMES}})}, "ui", parameters=[_SCOPE])},
    "/ui/api/pipelines": {"get": _op("Every node's WAL, remote_write queues, Loki clients and search stores", {
        200: _agent_ok({"type": "object", "properties": {
            "node": _STR, "version": _STR, "nodes": {"type": "array", "items": _OBJ},
            "partial": {"type": "boolean"}, "missingNodes": _NAMES}})}, "ui", parameters=[_SCOPE])},
}


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "scraping-service", "version": __version__,
                 "description": "Config, agent, ring, ops, Loki push and log search APIs of one node."},
        "security": [{}, {"basicAuth": []}, {"bearerAuth": []}],
        "paths": {**_CONFIG_API, **_AGENT_API, **_LOKI, **_SEARCH, **_UI},
        "components": COMPONENTS,
    }


def openapi_routes() -> list[Route]:
    body = orjson.dumps(document())

    async def serve(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return [Route(PATH, serve, methods=["GET"])]
