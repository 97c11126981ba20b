"""Per-document debounced jobs (syntax and lint refreshes): a job runs once, `delay` after the last
keystroke; a newer keystroke cancels a running job; cancel stops a pending one."""

from __future__ import annotations

import asyncio

from heedls.server.features.diagnostics import _DocumentJobs


class _Recorder:
    def __init__(self, duration: float = 0.0) -> None:
        self.started: list[tuple[str, float]] = []
        self.finished: list[str] = []
        self.duration = duration

    async def job(self, uri: str) -> None:
        self.started.append((uri, asyncio.get_running_loop().time()))
        await asyncio.sleep(self.duration)
        self.finished.append(uri)


async def test_runs_once_a_delay_after_the_last_schedule() -> None:
    rec = _Recorder()
    jobs = _DocumentJobs(rec.job)
    loop = asyncio.get_running_loop()
    for _ in range(5):  # typing: one keystroke every 20 ms, delay 50 ms
        jobs.schedule("a", 0.05)
        last = loop.time()
        await asyncio.sleep(0.02)
    jobs.schedule("b", 0.05)
    await asyncio.sleep(0.15)
    assert [uri for uri, _ in rec.started] == ["a", "b"]
    assert rec.started[0][1] - last >= 0.05 - 0.005
    assert rec.finished == ["a", "b"]


async def test_a_shorter_delay_fires_earlier_and_zero_runs_at_once() -> None:
    rec = _Recorder()
    jobs = _DocumentJobs(rec.job)
    loop = asyncio.get_running_loop()
    jobs.schedule("a", 10.0)
    start = loop.time()
    jobs.schedule("a", 0.02)  # configuration changed to a shorter debounce
    await asyncio.sleep(0.1)
    assert len(rec.started) == 1 and rec.started[0][1] - start < 1.0
    jobs.schedule("a", 0)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(rec.started) == 2


async def test_a_new_schedule_cancels_the_running_job_and_cancel_stops_a_pending_one() -> None:
    rec = _Recorder(duration=0.2)
    jobs = _DocumentJobs(rec.job)
    jobs.schedule("a", 0.01)
    await asyncio.sleep(0.05)  # started, still running
    jobs.schedule("a", 0.01)
    await asyncio.sleep(0.05)
    jobs.cancel("a")  # the second run is cancelled while running
    jobs.schedule("b", 0.05)
    jobs.cancel("b")  # pending: never starts
    await asyncio.sleep(0.3)
    assert [uri for uri, _ in rec.started] == ["a", "a"] and rec.finished == []
    assert await asyncio.gather(*jobs.cancel_all(), return_exceptions=True) == []
