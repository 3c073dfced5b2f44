"""The config validation process (service/configapi/worker.py): budget, restart and the frames it answers."""

from __future__ import annotations

import asyncio

import pytest

from service.configapi.validation import Rejected
from service.configapi.worker import ValidationWorker
from service.metrics.config import GlobalConfig

BIG = ("scrape_configs:\n- job_name: big\n  static_configs:\n  - targets:\n"
       + "".join(f"    - 'h{i:06d}.example:9100'\n" for i in range(60_000))).encode()


def test_validation_worker_answers_rejects_and_enforces_its_budget() -> None:
    async def scenario() -> None:
        worker = ValidationWorker(cpu_budget=0.3)
        await worker.start()
        try:
            ok = await worker.validate(b"scrape_configs: [{job_name: a}]\nname: ignored\n", "n", GlobalConfig(),
                                       False)
            assert ok.jobs == frozenset({"a"}) and ok.stored.startswith('name: "n"\n')
            with pytest.raises(Rejected) as bad:
                await worker.validate(b"scrape_configs: [{job_name: a, nope: 1}]\n", "n", GlobalConfig(), False)
            assert bad.value.status == 400 and bad.value.message.startswith("could not unmarshal config: ")
            pid = worker.pid
            with pytest.raises(Rejected) as costly:
                await worker.validate(BIG, "n", GlobalConfig(), False)
            assert costly.value.status == 400 and "too costly" in costly.value.message
            assert worker.pid == pid  # the budget stops the work, not the process
            # killed between requests (e.g. by the OOM killer): the next request is retried in a new process
            assert pid is not None
            worker._proc.kill()  # type: ignore[union-attr]  # our own child
            again = await worker.validate(b"scrape_configs: []\n", "n", GlobalConfig(), False)
            assert again.jobs == frozenset() and worker.pid not in (None, pid)
        finally:
            await worker.stop()
        assert worker.pid is None

    asyncio.run(scenario())
