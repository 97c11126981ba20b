"""The user's refit: fit candidates on the user's decided rows, keep a stage only if it beats the model
that served the newest events. Pure (rows and model JSON in, stage JSON and a report out), so the live
gate can run it in a separate, lower-priority process: a fit with the prior rows takes seconds of CPU,
which in a thread of the server would compete with every request for the GIL.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from heedls.server.acceptance.features import STAGE_FEATURES, vectorize
from heedls.server.acceptance.model import AcceptanceModel, Kind, fit_stage

log = logging.getLogger(__name__)

HOLDOUT_SHARE = 0.2
REFIT_TIMEOUT_S = 600.0

RefitResult = tuple[dict[str, dict[str, Any]], dict[str, Any]]


def fit_candidates(rows: Sequence[Mapping[str, Any]], current: Mapping[str, Any] | None, keep: float, label: str,
                   kinds: Mapping[str, Kind], use_prior: bool) -> RefitResult:
    """Stages (as JSON) that evaluated at least as well as the current model on the newest 20 % of
    `rows` (AUC, then log-loss), refitted on all rows; and a report of what was compared."""
    from heedls.server.acceptance.evaluate import auc
    from heedls.server.acceptance.prior import load_shipped_prior

    model = AcceptanceModel.from_json(current) if current is not None else None
    cut = int(len(rows) * (1.0 - HOLDOUT_SHARE))
    old, new = rows[:cut], rows[cut:]
    prior = load_shipped_prior() if use_prior else None
    sessions = {str(r.get("session")) for r in rows}
    installed: dict[str, dict[str, Any]] = {}
    report: dict[str, Any] = {"ts": time.time(), "n": len(rows), "holdout": len(new), "pid": os.getpid()}
    for stage in ("context", "suggestion"):
        usable_old = [r for r in old if r.get(stage)]
        usable_new = [r for r in new if r.get(stage)]
        if len(usable_old) < 10 or len(usable_new) < 5:
            continue
        names = STAGE_FEATURES[stage]
        kind = kinds.get(stage, "logreg")
        X_old, y_old, g_old = _matrix(usable_old, stage, names, label)
        X_new, y_new, _ = _matrix(usable_new, stage, names, label)
        # other people's rows also steady the calibration and threshold of the user's own (few) decisions
        found = prior.rows(stage, names, sessions, False, label) if prior is not None else None
        candidate = fit_stage(stage, names, X_old, y_old, g_old, kind=kind, keep_accepted=keep, prior=found)
        cand_p = candidate.predict(X_new)
        inc_p = np.full(y_new.size, float(y_old.mean()))
        if model is not None:  # each held-back event scored by the model that served it
            for i, r in enumerate(usable_new):
                incumbent = model.stage_for(stage, r.get("provider"))
                if incumbent is not None:
                    inc_p[i] = incumbent.score(r[stage])
        cand = (auc(y_new, cand_p) or 0.5, -logloss(y_new, cand_p))
        inc = (auc(y_new, inc_p) or 0.5, -logloss(y_new, inc_p))
        report[stage] = {"candidate_auc": round(cand[0], 4), "current_auc": round(inc[0], 4)}
        if cand < inc:
            report[stage]["result"] = "rolled back"
            continue
        X_all, y_all, g_all = _matrix([r for r in rows if r.get(stage)], stage, names, label)
        installed[stage] = fit_stage(stage, names, X_all, y_all, g_all, kind=kind, keep_accepted=keep,
                                     prior=found,
                                     meta={"source": "user refit", "label": label,
                                           "prior_sources": [] if found is None else found.used}).to_json()
        report[stage]["result"] = "installed"
    return installed, report


def fit_candidates_in_process(*args: Any) -> RefitResult:
    """`fit_candidates` in a fresh, lower-priority process, spawned (the server has threads, so no
    fork) and daemonic: a server that exits mid-fit neither waits for it nor leaves it behind. Falls
    back to the calling thread if no process can be started; a fit that takes longer than
    REFIT_TIMEOUT_S is abandoned (TimeoutError) and its process terminated."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    worker = ctx.Process(target=_worker, args=(sender, args), name="heedls-refit", daemon=True)
    try:
        worker.start()
    except (OSError, RuntimeError) as exc:  # RuntimeError: spawning while the main module is importing
        log.warning("acceptance refit: no worker process (%s); fitting in this process", exc)
        return fit_candidates(*args)
    finally:
        sender.close()  # the child has its own copy: EOF here once it is gone
    try:
        if not receiver.poll(REFIT_TIMEOUT_S):
            raise TimeoutError(f"acceptance refit took longer than {REFIT_TIMEOUT_S:.0f} s")
        ok, payload = receiver.recv()
    except EOFError as exc:
        raise RuntimeError(f"acceptance refit worker died (exit code {worker.exitcode})") from exc
    finally:
        receiver.close()
        worker.join(timeout=5)
        if worker.is_alive():
            worker.terminate()
    if not ok:
        raise RuntimeError(f"acceptance refit failed in its worker: {payload}")
    result: RefitResult = payload
    return result


def _worker(sender: Any, args: tuple[Any, ...]) -> None:
    _lower_priority()
    try:
        outcome: tuple[bool, Any] = (True, fit_candidates(*args))
    except Exception as exc:  # reported to the server, which keeps its current model
        outcome = (False, f"{type(exc).__name__}: {exc}")
    sender.send(outcome)
    sender.close()


def _lower_priority() -> None:
    """Worker start-up: below the server's priority, and never writing to its stdout, which is the
    LSP channel under `heedls serve` (the spawned child inherits the descriptor)."""
    try:
        os.dup2(2, 1)
        sys.stdout = sys.stderr
    except OSError:
        pass
    try:
        os.nice(10)
    except (OSError, AttributeError):
        pass  # not permitted or not POSIX: run at normal priority


def _matrix(rows: Sequence[Mapping[str, Any]], stage: str, names: Sequence[str],
            label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = vectorize([r[stage] for r in rows], names)
    y = np.asarray([float(r[label]) for r in rows])
    groups = np.asarray([str(r.get("session")) for r in rows], dtype=object)
    return X, y, groups


def logloss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


__all__ = ["HOLDOUT_SHARE", "fit_candidates", "fit_candidates_in_process", "logloss"]
