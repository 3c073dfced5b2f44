"""Reload and ring API fuzzing against a live node.

`/-/reload` with a mutated node file answers 200 or 400, never a 5xx; after a 400 the running config is
unchanged. The ring API answers its shape for any query, and reshard any body; other methods get 405.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.client import send
from tests.fuzz.conftest import RW_INSTANCE, FuzzEnv
from tests.helpers.node_process import wait_for

pytestmark = pytest.mark.slow
FUZZ = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

text = st.text(st.characters(exclude_categories=("Cs", "Cc"), include_characters="\n\t"), max_size=40)


@st.composite
def mutated_files(draw: st.DrawFn, original: str) -> str:
    lines = original.splitlines()
    kind = draw(st.sampled_from(["replace-value", "insert-line", "delete-line", "truncate", "append", "junk"]))
    if kind == "replace-value":
        i = draw(st.sampled_from([n for n, line in enumerate(lines) if ":" in line]))
        key = lines[i].split(":", 1)[0]
        lines[i] = f"{key}: {draw(text | st.sampled_from(['', '[]', '{}', '-1', '0s', 'true', '~']))}"
    elif kind == "insert-line":
        lines.insert(draw(st.integers(0, len(lines))), draw(text))
    elif kind == "delete-line":
        del lines[draw(st.integers(0, len(lines) - 1))]
    elif kind == "truncate":
        return original[:draw(st.integers(0, len(original) - 1))]
    elif kind == "append":
        lines.append(draw(st.sampled_from(["unknown: 1", "server: {}", "metrics: []", "logs: ~", "  nested: x"])))
    else:
        return draw(text)
    return "\n".join(lines) + "\n"


def running_config(env: FuzzEnv) -> str:
    resp = send(env.node, "GET", "/-/config")
    assert resp.status == 200
    return resp.text


def test_reload_with_mutated_files(fuzz_env: FuzzEnv) -> None:
    original = fuzz_env.config_text
    before = running_config(fuzz_env)
    counts = {200: 0, 400: 0}

    @FUZZ
    @given(st.data())
    def one(data: st.DataObject) -> None:
        fuzz_env.config_file.write_text(data.draw(mutated_files(original)))
        try:
            resp = send(fuzz_env.node, data.draw(st.sampled_from(["GET", "POST"])), "/-/reload", timeout=30)
            assert resp.status in (200, 400), resp.status
            counts[resp.status] += 1
            if resp.status == 400:
                assert running_config(fuzz_env) == before, "a refused reload changed the running config"
        finally:
            fuzz_env.config_file.write_text(original)
            assert send(fuzz_env.node, "POST", "/-/reload", timeout=30).status == 200
        assert running_config(fuzz_env) == before
        # an accepted mutation may have restarted the KV store and cluster: wait until the instance runs again
        wait_for(lambda: RW_INSTANCE in send(fuzz_env.node, "GET", "/agent/api/v1/metrics/instances").json()["data"],
                 30, what="the remote_write instance back after a reload")

    one()
    assert counts[400] >= 5, counts
    assert fuzz_env.node.get("/-/ready").status == 200


def test_ring_api(fuzz_env: FuzzEnv) -> None:
    @FUZZ
    @given(st.dictionaries(text, text, max_size=3), st.binary(max_size=50),
           st.sampled_from(["PUT", "DELETE", "PATCH", "GET", "POST"]))
    def one(query: dict[str, str], body: bytes, method: str) -> None:
        qs = "?" + urlencode(query) if query else ""
        ring = send(fuzz_env.node, "GET", "/agent/api/v1/cluster/ring" + qs)
        assert ring.status == 200, ring.text
        data = ring.json()["data"]
        assert data["self"] in {m["id"] for m in data["members"]}
        assert {"fuzzrw"} <= {c["name"] for c in data["configs"]}
        reshard = send(fuzz_env.node, "POST", "/agent/api/v1/cluster/reshard" + qs, body, timeout=30)
        assert reshard.status == 200 and reshard.json()["data"]["ok"] is True, reshard.text
        other = send(fuzz_env.node, method, "/agent/api/v1/cluster/ring", body)
        assert other.status == (200 if method == "GET" else 405)

    one()
