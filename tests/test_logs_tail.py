"""File tailing on real files with the real clock: every wait polls a condition with a deadline."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.config.errors import ConfigError
from service.logs.entry import Entry
from service.logs.tail.manager import FileTargetManager
from service.logs.tail.positions import Positions
from tests.helpers.polling import wait_until

FAST = {"sync_period": 0.1, "poll_min": 0.02, "poll_max": 0.05}


class Collector:
    """A sink that keeps what it accepted and can be told to refuse."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.refuse = False
        self.refused = 0

    async def __call__(self, batch: list[Entry]) -> None:
        if self.refuse:
            self.refused += 1
            raise RuntimeError("back-pressure")
        self.entries.extend(batch)

    def lines(self, path: str | None = None) -> list[str]:
        return [e.line for e in self.entries if path is None or e.labels.get("filename") == path]


def job(glob: str, exclude: str = "", **extra: Any) -> dict[str, Any]:
    labels = {"__path__": glob, "job": "varlogs"}
    if exclude:
        labels["__path_exclude__"] = exclude
    return {"job_name": "files", "static_configs": [{"targets": ["localhost"], "labels": labels}], **extra}


def append(path: Path, text: str) -> None:
    with open(path, "a") as fh:
        fh.write(text)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_tails_new_lines_with_filename_label_and_reports_targets(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("one\ntwo\n")
    positions = Positions(str(tmp_path / "positions.yml"))

    async def main() -> tuple[list[Entry], list[dict[str, Any]], dict[str, Any]]:
        sink = Collector()
        mgr = FileTargetManager([job(str(tmp_path / "*.log"))], positions, sink, **FAST)
        await mgr.start()
        try:
            await wait_until(lambda: len(sink.entries) == 2)
            append(log, "three\n")
            await wait_until(lambda: len(sink.entries) == 3)
            await wait_until(lambda: positions.get(str(log)) == log.stat().st_size)
            targets = mgr.targets()
        finally:
            await mgr.stop()
        return sink.entries, targets, yaml.safe_load((tmp_path / "positions.yml").read_text())

    entries, targets, saved = run(main())
    assert [e.line for e in entries] == ["one", "two", "three"]
    assert entries[0].labels == {"job": "varlogs", "filename": str(log)}
    assert abs(entries[0].timestamp_ns - time.time_ns()) < 60e9
    assert targets == [{
        "target_group": "files", "type": "File", "labels": {"job": "varlogs"},
        "discovered_labels": {"__address__": "localhost", "__path__": str(tmp_path / "*.log"), "job": "varlogs"},
        "ready": True, "details": {str(log): len("one\ntwo\nthree\n")},
    }]
    assert saved == {"positions": {str(log): str(len("one\ntwo\nthree\n"))}}


def test_glob_picks_up_new_file_and_drops_deleted_one(tmp_path: Path) -> None:
    positions = Positions(str(tmp_path / "positions.yml"))
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("a1\n")

    async def main() -> tuple[Collector, dict[str, int], dict[str, int]]:
        sink = Collector()
        mgr = FileTargetManager([job(str(tmp_path / "*.log"))], positions, sink, **FAST)
        await mgr.start()
        try:
            await wait_until(lambda: sink.lines() == ["a1"])
            b.write_text("b1\nb2\n")
            await wait_until(lambda: sink.lines(str(b)) == ["b1", "b2"])
            both = mgr.targets()[0]["details"]
            a.unlink()
            await wait_until(lambda: str(a) not in mgr.targets()[0]["details"])
            await wait_until(lambda: str(a) not in positions.snapshot())  # the finished reader forgets it next
            after = mgr.targets()[0]["details"]
        finally:
            await mgr.stop()
        return sink, both, after

    sink, both, after = run(main())
    assert both == {str(a): 3, str(b): 6}
    assert after == {str(b): 6}
    assert positions.snapshot() == {str(b): "6"}
    assert sink.lines() == ["a1", "b1", "b2"]


def test_rename_and_create_rotation_loses_and_repeats_nothing(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    positions = Positions(str(tmp_path / "positions.yml"))
    expected = [f"line {i}" for i in range(300)]

    async def main() -> list[str]:
        sink = Collector()
        mgr = FileTargetManager([job(str(log))], positions, sink, **FAST)
        await mgr.start()
        try:
            for generation in range(3):
                first = generation * 100
                with open(log, "a") as fh:
                    fh.writelines(f"line {i}\n" for i in range(first, first + 50))
                    fh.flush()
                    # the reader is on this file; more lines land in it right before it is rotated away
                    await wait_until(lambda first=first: len(sink.entries) >= first + 50)
                    fh.writelines(f"line {i}\n" for i in range(first + 50, first + 100))
                    fh.flush()
                    os.rename(log, tmp_path / f"app.log.{generation}")
                    log.write_text("")
            await wait_until(lambda: len(sink.entries) >= 300)
            # no late duplicates either: give the reader time to settle on the new file, then compare
            await wait_until(lambda: positions.get(str(log)) == 0 and mgr.targets()[0]["ready"])
        finally:
            await mgr.stop()
        return sink.lines()

    assert run(main()) == expected


def test_copytruncate_restarts_at_zero(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("a long first line before truncation\nsecond line\n")
    positions = Positions(str(tmp_path / "positions.yml"))

    async def main() -> list[str]:
        sink = Collector()
        mgr = FileTargetManager([job(str(log))], positions, sink, **FAST)
        await mgr.start()
        try:
            await wait_until(lambda: len(sink.entries) == 2)
            shutil.copy(log, tmp_path / "app.log.1")
            with open(log, "r+") as fh:
                fh.truncate(0)
            append(log, "new\n")
            await wait_until(lambda: len(sink.entries) == 3)
            await wait_until(lambda: positions.get(str(log)) == 4)
        finally:
            await mgr.stop()
        return sink.lines()

    assert run(main()) == ["a long first line before truncation", "second line", "new"]


def test_partial_line_waits_for_newline(tmp_path: Path) -> None:
    from service.logs.tail import metrics

    log = tmp_path / "app.log"
    log.write_text("done\npar")
    positions = Positions(str(tmp_path / "positions.yml"))

    def read_bytes() -> float:
        return metrics.READ_BYTES.labels(str(log))._value.get()

    async def main() -> tuple[list[str], int, list[str]]:
        sink = Collector()
        mgr = FileTargetManager([job(str(log))], positions, sink, **FAST)
        await mgr.start()
        try:
            await wait_until(lambda: len(sink.entries) == 1 and read_bytes() == 8)
            before, pos = sink.lines(), positions.get(str(log))
            append(log, "tial\n")
            await wait_until(lambda: len(sink.entries) == 2)
        finally:
            await mgr.stop()
        return before, pos, sink.lines()

    before, pos, after = run(main())
    assert before == ["done"]
    assert pos == 5          # the position never covers a partial line
    assert after == ["done", "partial"]


def test_long_line_is_cut_and_rest_skipped(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("x" * 100 + "\n" + "short\n" + "y" * 50)
    positions = Positions(str(tmp_path / "positions.yml"))

    async def main() -> list[str]:
        sink = Collector()
        mgr = FileTargetManager([job(str(log))], positions, sink, max_line_bytes=10, **FAST)
        await mgr.start()
        try:
            await wait_until(lambda: len(sink.entries) == 3)
            append(log, "y" * 20 + "\nafter\n")
            await wait_until(lambda: len(sink.entries) == 4)
        finally:
            await mgr.stop()
        return sink.lines()

    assert run(main()) == ["x" * 10, "short", "y" * 10, "after"]


def test_restart_resumes_from_saved_positions(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("1\n2\n3\n")
    path = str(tmp_path / "positions.yml")

    async def session(expect: int) -> list[str]:
        sink = Collector()
        positions = Positions(path)
        mgr = FileTargetManager([job(str(log))], positions, sink, **FAST)
        await mgr.start()
        try:
            await wait_until(lambda: len(sink.entries) >= expect)
            await wait_until(lambda: positions.get(str(log)) == log.stat().st_size)
        finally:
            await mgr.stop()
        return sink.lines()

    assert run(session(3)) == ["1", "2", "3"]
    append(log, "4\n5\n")
    assert run(session(2)) == ["4", "5"]
    assert yaml.safe_load(Path(path).read_text()) == {"positions": {str(log): "10"}}


def test_refusing_sink_does_not_advance_positions(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("a\nb\n")
    path = str(tmp_path / "positions.yml")

    async def refused() -> tuple[int, int, list[str], dict[str, Any]]:
        sink = Collector()
        sink.refuse = True
        positions = Positions(path)
        mgr = FileTargetManager([job(str(log))], positions, sink, **FAST)
        await mgr.start()
        try:
            await wait_until(lambda: sink.refused >= 3)
            pos = positions.get(str(log))
            details = mgr.targets()[0]["details"]
        finally:
            await mgr.stop()
        return pos, details[str(log)], sink.lines(), yaml.safe_load(Path(path).read_text())

    pos, detail, lines, saved = run(refused())
    assert (pos, detail, lines) == (0, 0, [])
    assert saved == {"positions": {str(log): "0"}}

    async def recovers() -> list[str]:
        sink = Collector()
        sink.refuse = True
        positions = Positions(path)
        mgr = FileTargetManager([job(str(log))], positions, sink, **FAST)
        await mgr.start()
        try:
            await wait_until(lambda: sink.refused >= 2)
            sink.refuse = False
            await wait_until(lambda: positions.get(str(log)) == 4)
        finally:
            await mgr.stop()
        return sink.lines()

    assert run(recovers()) == ["a", "b"]


def test_path_exclude_and_relabel_and_pipeline(tmp_path: Path) -> None:
    (tmp_path / "keep.log").write_text('{"level":"warn","msg":"hello"}\n')
    (tmp_path / "skip.log").write_text("nope\n")
    positions = Positions(str(tmp_path / "positions.yml"))
    cfg = job(str(tmp_path / "*.log"), exclude=str(tmp_path / "skip*"),
              relabel_configs=[{"target_label": "env", "replacement": "prod"}],
              pipeline_stages=[{"json": {"expressions": {"level": "", "msg": ""}}},
                               {"labels": {"level": None}}, {"output": {"source": "msg"}}])

    async def main() -> tuple[list[Entry], list[dict[str, Any]]]:
        sink = Collector()
        mgr = FileTargetManager([cfg], positions, sink, **FAST)
        await mgr.start()
        try:
            await wait_until(lambda: len(sink.entries) == 1)
            targets = mgr.targets()
        finally:
            await mgr.stop()
        return sink.entries, targets

    entries, targets = run(main())
    assert [(e.line, e.labels) for e in entries] == [
        ("hello", {"env": "prod", "job": "varlogs", "filename": str(tmp_path / "keep.log"), "level": "warn"})]
    assert list(targets[0]["details"]) == [str(tmp_path / "keep.log")]
    assert targets[0]["labels"] == {"env": "prod", "job": "varlogs"}


def test_targets_without_path_or_dropped_by_relabel_are_not_tailed(tmp_path: Path) -> None:
    positions = Positions(str(tmp_path / "positions.yml"))
    cfgs = [
        {"job_name": "nopath", "static_configs": [{"targets": ["localhost"], "labels": {"job": "x"}}]},
        {**job(str(tmp_path / "*.log")), "job_name": "dropped",
         "relabel_configs": [{"source_labels": ["job"], "regex": "varlogs", "action": "drop"}]},
    ]

    async def main() -> tuple[list[dict[str, Any]], int]:
        mgr = FileTargetManager(cfgs, positions, Collector(), **FAST)
        await mgr.start()
        await mgr.stop()
        return mgr.targets(), len(mgr.dropped_targets())

    assert run(main()) == ([], 2)


def test_bad_configs_are_refused(tmp_path: Path) -> None:
    positions = Positions(str(tmp_path / "positions.yml"))
    with pytest.raises(ConfigError, match="Unknown stage type: bogus"):
        FileTargetManager([job("/x", pipeline_stages=[{"bogus": {}}])], positions, Collector())
    with pytest.raises(ConfigError, match="unknown relabel action"):
        FileTargetManager([job("/x", relabel_configs=[{"action": "nope"}])], positions, Collector())
    with pytest.raises(ConfigError, match="multiple scrape configs"):
        FileTargetManager([job("/x"), job("/y")], positions, Collector())


def test_positions_file_format_and_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "positions.yml"
    p = Positions(str(path))
    p.put("/var/log/a.log", 123)
    p.put_string("journal", "cursor=abc")
    p.save()
    assert yaml.safe_load(path.read_text()) == {"positions": {"/var/log/a.log": "123", "journal": "cursor=abc"}}
    again = Positions(str(path))
    assert again.get("/var/log/a.log") == 123 and again.get("/missing") == 0
    again.remove("/var/log/a.log")
    assert again.get("/var/log/a.log") == 0
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".positions-")]
    path.write_text("positions: [not: valid\n")
    with pytest.raises(ConfigError, match="invalid yaml positions file"):
        Positions(str(path))
    assert Positions(str(path), ignore_invalid_yaml=True).snapshot() == {}


def test_positions_start_saves_periodically_and_on_stop(tmp_path: Path) -> None:
    path = tmp_path / "positions.yml"

    async def main() -> tuple[Any, Any]:
        p = Positions(str(path), sync_period=0.05)
        await p.start()
        p.put("/a", 1)
        await wait_until(lambda: path.exists() and "/a" in path.read_text())
        first = yaml.safe_load(path.read_text())
        p.put("/a", 2)
        await p.stop()
        return first, yaml.safe_load(path.read_text())

    assert run(main()) == ({"positions": {"/a": "1"}}, {"positions": {"/a": "2"}})
