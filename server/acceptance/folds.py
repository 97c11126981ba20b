"""The per-session fits of leave-one-session-out, serially or in worker processes.

Each held-out session's fit is independent and seeded, so worker processes give exactly the
serial results, in any completion order; they only divide the wall time (the fits dominate it:
2,000 events in 20 sessions take about a minute on one core). Workers receive the data once, at
start-up, not with every session.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.forkserver as forkserver
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from heedls.analyzers.proc import pid_alive, usable_cpus
from heedls.server.acceptance.model import Kind, fit_stage
from heedls.server.acceptance.prior import PriorRows

log = logging.getLogger(__name__)

# Below this many rows to fit (the file's labelled ones and the prior's) a fold fits in well under
# a second: starting workers (each imports NumPy and heedls) would cost more than it saves.
PARALLEL_MIN_ROWS = 1000
MAX_AUTO_JOBS = 4


@dataclass(frozen=True)
class FoldJob:
    """Everything a fold's fit needs, shipped to each worker once."""

    stage: str
    features: tuple[str, ...]
    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    kind: Kind
    keep: float
    seed: int
    params: Mapping[str, Any] | None
    prior: PriorRows | None


FoldResult = tuple[np.ndarray, float]  # held-out calibrated scores, the fold's threshold


def fit_fold(job: FoldJob, session: Any) -> FoldResult:
    """Fit on every session but `session`; score `session`'s rows."""
    test = job.groups == session
    train = ~test
    model = fit_stage(job.stage, job.features, job.X[train], job.y[train], job.groups[train], kind=job.kind,
                      keep_accepted=job.keep, seed=job.seed, params=job.params, prior=job.prior)
    return model.predict(job.X[test]), model.threshold


def auto_jobs(rows: int, sessions: int) -> int:
    """Workers worth starting: one per core (at most MAX_AUTO_JOBS), none for small data."""
    if rows < PARALLEL_MIN_ROWS or sessions < 3:
        return 1
    return max(1, min(usable_cpus(), MAX_AUTO_JOBS, sessions))


def fit_folds(job: FoldJob, sessions: Sequence[Any], jobs: int = 1,
              progress: Callable[[int, int], None] | None = None) -> dict[Any, FoldResult]:
    """Every session's held-out result. `jobs` > 1 fits in that many worker processes; if they
    cannot be started (or die), the remaining folds are fitted here, with a warning."""
    results: dict[Any, FoldResult] = {}
    if jobs > 1 and len(sessions) > 2:
        try:
            _fit_in_workers(job, sessions, min(jobs, len(sessions)), results, progress)
        except (BrokenProcessPool, OSError, RuntimeError) as exc:
            log.warning("leave-one-session-out workers failed (%s): fitting the remaining folds here", exc)
    here = False
    for session in sessions:
        if session not in results:
            if progress is not None:
                progress(len(results), len(sessions))
            results[session] = fit_fold(job, session)
            here = True
    if here and progress is not None:  # the last fold done: the count ended one short of the total
        progress(len(results), len(sessions))
    return results


def _fit_in_workers(job: FoldJob, sessions: Sequence[Any], jobs: int, results: dict[Any, FoldResult],
                    progress: Callable[[int, int], None] | None) -> None:
    # forkserver: workers do not inherit the parent's threads (a progress bar, a server's) mid-lock
    context = multiprocessing.get_context("forkserver")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_start_worker,
                               initargs=(job, os.getpid()))
    try:
        with _ctrl_c_deferred():
            _start_forkserver()
            # submit() starts the workers: one interrupted half-way would be left starting, unknown
            # to the pool, and fail over the user's terminal once this process had gone
            futures = {pool.submit(_fit_in_worker, session): session for session in sessions}
        if progress is not None:
            progress(0, len(sessions))
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if progress is not None:
                progress(len(results), len(sessions))
    except BaseException:
        # Ctrl-C or a failed fold: stop the workers now, not after every fold still queued
        _stop(pool)
        raise
    pool.shutdown()


def _stop(pool: ProcessPoolExecutor) -> None:
    # The running folds too: Python 3.14 has terminate_workers(); before it only the private map,
    # read before shutdown() clears it.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)  # shutdown() forgets it
    for process in processes:
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    # Let the pool's manager thread finish closing its wake-up pipe now: on Python 3.11 the exit
    # hook that wakes it can race that close and print "OSError: Bad file descriptor" on Ctrl-C.
    if isinstance(manager, threading.Thread) and manager is not threading.current_thread():
        manager.join(timeout=STOP_JOIN_S)


STOP_JOIN_S = 2.0


@contextmanager
def _ctrl_c_deferred() -> Iterator[None]:
    """Hold a Ctrl-C that comes in the block until its end, then take it as it would have been."""
    taken: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: taken.append(signum))
    except ValueError:  # not the main thread, which alone takes Ctrl-C as KeyboardInterrupt
        yield
        return
    if previous in (signal.SIG_IGN, signal.SIG_DFL, None):  # not ours to change
        signal.signal(signal.SIGINT, previous)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if taken:
        signal.raise_signal(signal.SIGINT)


def _start_forkserver() -> None:
    """Start the forkserver with Ctrl-C blocked, as the resource tracker is started.

    A new Python process takes Ctrl-C (sent to the whole foreground group) as KeyboardInterrupt
    while it imports `site`, before the forkserver can ignore it: the interpreter then dies with
    "Fatal Python error: init_import_site" over the user's terminal. A blocked signal stays blocked
    across exec and is inherited by the workers the forkserver forks, whose start-up it also covers;
    here it stays pending and is taken the moment it is unblocked."""
    block = getattr(signal, "pthread_sigmask", None)
    if block is None:  # not POSIX: no forkserver either
        return
    block(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        forkserver.ensure_running()
    finally:
        block(signal.SIG_UNBLOCK, {signal.SIGINT})


_worker_job: FoldJob | None = None  # set once per worker process by _start_worker; never in the parent


OWNER_POLL_S = 0.5


def _start_worker(job: FoldJob, owner: int) -> None:
    global _worker_job
    _worker_job = job
    # Ctrl-C reaches the whole process group: the parent stops the workers, they do not each raise
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_without, args=(owner,), name="heedls-fold-owner", daemon=True).start()


def _exit_without(owner: int) -> None:
    """A worker outlives the process it fits for when that one is killed (kill -9, an OOM kill) or
    stops it too late to see it (a worker still starting when Ctrl-C came): it would wait for work
    forever, holding the caller's output pipes open. It exits once `owner` is gone."""
    while pid_alive(owner):
        time.sleep(OWNER_POLL_S)
    os._exit(1)


def _fit_in_worker(session: Any) -> FoldResult:
    assert _worker_job is not None, "worker started without its job"
    return fit_fold(_worker_job, session)


__all__ = ["FoldJob", "auto_jobs", "fit_fold", "fit_folds"]
