"""Config API fuzzing: random instance configs (structured and not) and names, against a live node.

Rules: no 5xx, no reset; 200/201 means stored (GET and the list show it); a 4xx changes nothing (GET and the
list answer exactly as before). Targets and remote_write URLs are on loopback only (nothing leaves it).
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.client import send
from tests.fuzz.conftest import RW_INSTANCE, FuzzEnv

pytestmark = pytest.mark.slow
FUZZ = settings(max_examples=50, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])



def mostly(valid: st.SearchStrategy, wrong: st.SearchStrategy) -> st.SearchStrategy:
    """Valid four times in five, so that many whole configs are valid and the 2xx path is exercised too."""
    return st.integers(0, 4).flatmap(lambda i: wrong if i == 4 else valid)  # 0, the simplest, is valid


durations = mostly(st.sampled_from(["1s", "10s", "1m"]), st.sampled_from(["0s", "-5s", "abc", "1.5s", "", "999999999h",
                                                                          5]))
regexes = mostly(st.sampled_from([".*", "a+", "(foo|bar)", "x{2,3}", "\\d+", "^a$", "é+", ""]),
                 st.sampled_from(["[", "("]))
regexes_ok = st.sampled_from([".*", "a+", "(foo|bar)", "x{2,3}", "\\d+", "^a$", "é+", ""])
actions_ok = st.sampled_from(["replace", "keep", "drop"])
actions = mostly(st.sampled_from(["replace", "keep", "drop"]), st.sampled_from(["labeldrop", "lowercase", "nope"]))
names = st.from_regex(r"\A[a-zA-Z_][a-zA-Z0-9_]{0,8}\Z")
URLS = ["http://127.0.0.1:1/api/v1/write", "https://127.0.0.1:1/w", "ftp://127.0.0.1/", "not a url", "",
        "http://127.0.0.1:1/%zz", "http://[::1"]
urls = st.sampled_from(URLS)
junk = st.one_of(st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=2), st.none(),
                 st.booleans())


@st.composite
def instance_configs(draw: st.DrawFn, tag: str, valid: bool) -> object:
    """A metrics instance config as a Python value (dumped to YAML): valid by construction when `valid`, else
    often a little wrong (bad durations, regexes, actions, URLs, unknown keys, wrong types)."""
    def pick(good: st.SearchStrategy, any_: st.SearchStrategy) -> object:
        return draw(good if valid else any_)

    good_durations = st.sampled_from(["1s", "10s"])
    jobs = []
    for i in range(draw(st.integers(0, 3))):
        job: dict[str, object] = {"job_name": f"{tag}-{i}" if valid or draw(st.booleans()) else draw(names),
                                  "static_configs": [{"targets": [f"127.0.0.1:{draw(st.integers(1, 3))}"],
                                                      "labels": draw(st.dictionaries(names, st.text(max_size=8),
                                                                                     max_size=2))}]}
        if draw(st.booleans()):
            job["scrape_interval"] = pick(good_durations, durations)
        if draw(st.integers(0, 3)) == 0:
            job["scrape_timeout"] = pick(st.just("1s"), durations)
        if draw(st.booleans()):
            job["relabel_configs"] = [{"source_labels": [draw(names)], "regex": pick(regexes_ok, regexes),
                                       "action": pick(actions_ok, actions), "target_label": draw(names)}]
        jobs.append(job)
    cfg: dict[str, object] = {}
    if jobs or draw(st.booleans()):
        cfg["scrape_configs"] = jobs
    if draw(st.booleans()):
        cfg["remote_write"] = [{"url": pick(st.just(URLS[0]), mostly(st.just(URLS[0]), urls)),
                                **({"name": f"{tag}-rw{i}"} if draw(st.booleans()) else {})}
                               for i in range(draw(st.integers(0, 2)))]
    if not valid:
        for key in ("wal_truncate_frequency", "remote_flush_deadline", "min_wal_time", "max_wal_time"):
            if draw(st.integers(0, 5)) == 0:
                cfg[key] = draw(durations)
        if draw(st.integers(0, 4)) == 0:
            cfg[draw(st.sampled_from(["nope", "scrape_configs", "remote_write", "host_filter"]))] = draw(junk)
    return cfg


def body_text(draw: st.DrawFn, tag: str) -> str:
    kind = draw(st.sampled_from(["valid", "valid", "mixed", "mixed", "text", "yaml-ish"]))
    if kind in ("valid", "mixed"):
        return yaml.safe_dump(draw(instance_configs(tag, kind == "valid")), allow_unicode=True)
    if kind == "text":
        # control characters (not \t, \n) are defect 8's case, in test_known_defects.py
        return draw(st.text(st.characters(exclude_categories=("Cs", "Cc"), include_characters="\t\n"),
                            max_size=200))
    return draw(st.sampled_from(["{", "- a\n b: c", "scrape_configs: {", "a: &x [*x]", "!!python/object:os.system",
                                 "scrape_configs:\n- job_name: a\n- job_name: a\n", "~", "[]", "'", "a: b\na: c\n"]))


config_names = st.from_regex(r"\A[a-z][a-z0-9-]{0,15}\Z") | st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=20)


def snapshot(env: FuzzEnv, path: str) -> tuple[int, bytes, list[str]]:
    got = send(env.node, "GET", f"/agent/api/v1/configs/{path}")
    listing = send(env.node, "GET", "/agent/api/v1/configs")
    assert listing.status == 200, listing.text
    return got.status, got.body, listing.json()["data"]["configs"]


def test_config_puts_store_what_they_acknowledge_and_nothing_else(fuzz_env: FuzzEnv) -> None:
    counts = {"2xx": 0, "4xx": 0}
    reasons: list[str] = []

    @FUZZ
    @given(st.data(), config_names.filter(lambda n: n != RW_INSTANCE))
    def one(data: st.DataObject, name: str) -> None:
        path = quote(name, safe="")
        tag = "fz" + path.replace("%", "")[:12]
        body = data.draw(st.composite(lambda draw: body_text(draw, tag))())
        before = snapshot(fuzz_env, path)
        method = data.draw(st.sampled_from(["PUT", "POST"]))
        resp = send(fuzz_env.node, method, f"/agent/api/v1/config/{path}", body.encode())
        assert resp.status in (200, 201, 400, 404), f"{resp.status} {resp.text}"
        assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
        envelope = resp.json()
        after = snapshot(fuzz_env, path)
        if resp.status in (200, 201):
            counts["2xx"] += 1
            assert envelope == {"status": "success"}
            assert after[0] == 200 and name in after[2], f"acknowledged but not stored: {after}"
            assert (resp.status == 201) == (before[0] == 404)
            deleted = send(fuzz_env.node, "DELETE", f"/agent/api/v1/config/{path}")
            assert deleted.status == 200, deleted.text
            assert send(fuzz_env.node, "GET", f"/agent/api/v1/configs/{path}").status == 404
        else:
            counts["4xx"] += 1
            reasons.append(envelope["data"]["error"][:80])
            assert envelope["status"] == "error" and envelope["data"]["error"], envelope
            assert after == before, f"a refused {method} changed the store: {before} -> {after}"

    one()
    assert counts["2xx"] >= 5 and counts["4xx"] >= 5, (counts, reasons[-10:])
