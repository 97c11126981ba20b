"""The user's refit: fit candidates on the user's decided rows, keep a stage only if it beats the model
that served the newest events. Pure (rows and model JSON in, stage JSON and a report out), so the live
gate can run it in a separate, lower-priority process: a fit with the prior rows takes seconds of CPU,
which in a thread of the server would compete with every request for the GIL.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import pickle
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from heedls.server.acceptance.features import STAGE_FEATURES, vectorize
from heedls.server.acceptance.model import AcceptanceModel, Kind, StageModel, fit_stage

log = logging.getLogger(__name__)

HOLDOUT_SHARE = 0.2
MIN_NEWER_ROWS = 30  # held-back rows newer than a user model's training data needed to replace it
REFIT_TIMEOUT_S = 600.0

RefitResult = tuple[dict[str, dict[str, Any]], dict[str, Any]]


def fit_candidates(rows: Sequence[Mapping[str, Any]], current: Mapping[str, Any] | None, keep: float, label: str,
                   kinds: Mapping[str, Kind], use_prior: bool) -> RefitResult:
    """Stages (as JSON) that evaluated at least as well as the current model on the newest 20 % of
    `rows` (AUC, then log-loss) and do not keep too few of its accepted rows (`_keeps_too_few`),
    refitted on all rows; and a report of what was compared.

    - Rows with a non-finite value in a stage's features are not learnt from for that stage.
    - A current stage that is itself a user refit is compared only on held-back rows newer than the
      rows it was trained on (`meta["trained_until_ts"]`): on the others it would be scored on its
      own training data. Fewer than MIN_NEWER_ROWS such rows: the stage waits for more (kept, not
      compared, not a rollback).
    - A candidate (or the final refit) with any non-finite weight, threshold, calibration or
      prediction on the held-back rows is never installed (rolled back).
    - A candidate or final refit that ranks nothing (it shows everything: `model._constant_stage`)
      replaces a current stage only if that one ranks the held-back rows backwards beyond chance
      (`_ranks_backwards`).
    """
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
        usable_old = [r for r in old if _usable(r.get(stage))]
        usable_new = [r for r in new if _usable(r.get(stage))]
        # each held-back event is scored by the model that served it, and only if that model was
        # not trained on it
        incumbents = [model.stage_for(stage, r.get("provider")) if model is not None else None for r in usable_new]
        fresh = [i for i, (r, inc) in enumerate(zip(usable_new, incumbents)) if _unseen(r, inc)]
        if len(usable_old) < 10 or len(usable_new) < 5:
            continue
        # A user refit is judged on rows it was not trained on, at least MIN_NEWER_ROWS of them
        # (whether or not some held-back rows are older); the shipped model saw none of them.
        refitted = any(inc is not None and _trained_until(inc) is not None for inc in incumbents)
        if refitted and len(fresh) < MIN_NEWER_ROWS:
            report[stage] = {"result": "waiting", "newer_rows": len(fresh), "needed": MIN_NEWER_ROWS}
            continue
        usable_new = [usable_new[i] for i in fresh]
        names = STAGE_FEATURES[stage]
        kind = kinds.get(stage, "logreg")
        X_old, y_old, g_old = _matrix(usable_old, stage, names, label)
        X_new, y_new, _ = _matrix(usable_new, stage, names, label)
        # Other people's rows steady what the user's own few decisions teach, but only train: the
        # threshold is to keep the target share of *this* user's accepts, so the user's own
        # out-of-fold scores calibrate and set it. (With other people's joining, a simulated user
        # who takes what people take less often was kept 0.58-0.74 of what they take by the refit.)
        found = prior.rows(stage, names, sessions, False, label) if prior is not None else None
        found = found.only_training() if found is not None else None
        candidate = fit_stage(stage, names, X_old, y_old, g_old, kind=kind, keep_accepted=keep, prior=found)
        cand_p = candidate.predict(X_new)
        inc_p = np.full(y_new.size, float(y_old.mean()))
        for i, r in enumerate(usable_new):
            incumbent = incumbents[fresh[i]]
            if incumbent is not None:
                inc_p[i] = incumbent.score(r[stage])
        if not (candidate.finite() and np.isfinite(cand_p).all()):
            report[stage] = {"result": "rolled back", "reason": "candidate not finite", "compared_on": len(usable_new)}
            continue
        cand = (auc(y_new, cand_p) or 0.5, -logloss(y_new, cand_p))
        inc = (auc(y_new, inc_p) or 0.5, -logloss(y_new, inc_p)) if np.isfinite(inc_p).all() else (-1.0, -np.inf)
        taken, cand_kept, inc_kept = _kept(y_new, cand_p, candidate.threshold_for(keep), inc_p,
                                           [incumbents[i] for i in fresh], keep)
        report[stage] = {"candidate_auc": round(cand[0], 4), "current_auc": round(inc[0], 4),
                         "compared_on": len(usable_new),
                         "candidate_kept": round(cand_kept / taken, 4) if taken else None,
                         "current_kept": round(inc_kept / taken, 4) if taken else None}
        if cand < inc:
            report[stage]["result"] = "rolled back"
            continue
        if _needlessly_flat(candidate, y_new, inc[0]):
            report[stage].update({"result": "rolled back", "reason": "the candidate does not rank"})
            continue
        if _keeps_too_few(taken, cand_kept, inc_kept, keep):
            # ranks as well, but hides more of this user's accepts than its target allows
            report[stage].update({"result": "rolled back", "reason": "keeps too few of the held-back accepts"})
            continue
        everything = [r for r in rows if _usable(r.get(stage))]
        X_all, y_all, g_all = _matrix(everything, stage, names, label)
        final = fit_stage(stage, names, X_all, y_all, g_all, kind=kind, keep_accepted=keep, prior=found,
                          meta={"source": "user refit", "label": label,
                                "prior_sources": [] if found is None else found.used,
                                # what it was trained on: the next refit compares it only on newer rows
                                "trained_until_ts": max(float(r["ts"]) for r in everything),
                                "trained_rows": len(everything)})
        if not final.finite():
            report[stage].update({"result": "rolled back", "reason": "refit not finite"})
            continue
        if _needlessly_flat(final, y_new, inc[0]):  # refitted on every row, it may rank nothing after all
            report[stage].update({"result": "rolled back", "reason": "the refit on all rows does not rank"})
            continue
        installed[stage] = final.to_json()
        report[stage]["result"] = "installed"
    return installed, report


def _kept(y: np.ndarray, cand_p: np.ndarray, cand_t: float, inc_p: np.ndarray,
          incumbents: Sequence[StageModel | None], keep: float) -> tuple[int, int, int]:
    """Of the held-back accepted rows: how many there are, and how many of them the candidate and
    the current model would show at their thresholds (before the user's bias; with no current
    model, the base rate shows everything)."""
    taken = np.flatnonzero(y == 1)
    inc_t = np.array([inc.threshold_for(keep) if inc is not None else 0.0 for inc in incumbents])
    return (int(taken.size), int(np.sum(cand_p[taken] >= cand_t)),
            int(np.sum(inc_p[taken] >= inc_t[taken])) if taken.size else 0)


BACKWARDS_Z = 1.645  # one-sided 5 %


def _needlessly_flat(fitted: StageModel, y: np.ndarray, current_auc: float) -> bool:
    """Whether `fitted` ranks nothing (one class, or "does not rank": it shows everything) while the
    current stage is not surely worse than that: an AUC a little under 0.5 on a few dozen held-back
    rows is no evidence against it; one that ranks them backwards beyond chance is better replaced."""
    return bool(fitted.meta.get("degenerate")) and not _ranks_backwards(y, current_auc)


def _ranks_backwards(y: np.ndarray, current_auc: float) -> bool:
    """Whether the current stage ranks the held-back rows backwards beyond chance: its AUC below
    0.5 by more than BACKWARDS_Z standard deviations of a stage that ranks at random (Mann-Whitney,
    no ties). Only then is a stage that ranks nothing (it shows everything) a gain over it: on 10
    accepts among 80 rows chance alone puts the AUC outside 0.34-0.66 one time in ten."""
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    if pos == 0 or neg == 0:
        return False
    spread = math.sqrt((pos + neg + 1) / (12.0 * pos * neg))
    return (current_auc - 0.5) / spread < -BACKWARDS_Z


KEPT_TEST_LEVEL = 0.01  # the chance of rolling back a candidate that does keep the target share


def _keeps_too_few(taken: int, cand_kept: int, current_kept: int, keep: float) -> bool:
    """Whether the candidate shows fewer of the `taken` held-back accepted rows than the current
    model and than `keep` allows by chance: were its true share `keep`, as few kept would come with
    probability below KEPT_TEST_LEVEL (binomial). With a few dozen accepts only a clear shortfall
    counts (of 10, 6 or fewer kept at keep 0.95; of 30, 24 or fewer)."""
    if taken == 0 or cand_kept >= current_kept:
        return False
    if keep >= 1.0:
        return cand_kept < taken
    # P(X <= cand_kept) for X ~ Binomial(taken, keep), term by term in logs (no overflow for any size)
    log_keep, log_miss = math.log(keep), math.log1p(-keep)
    tail = math.fsum(math.exp(math.lgamma(taken + 1) - math.lgamma(k + 1) - math.lgamma(taken - k + 1)
                              + k * log_keep + (taken - k) * log_miss) for k in range(cand_kept + 1))
    return tail < KEPT_TEST_LEVEL


def _usable(row: Any) -> bool:
    """A stage row with every value finite (a NaN feature would make every weight NaN)."""
    return bool(row) and all(isinstance(v, (int, float)) and math.isfinite(v) for v in row.values())


def _trained_until(model: StageModel) -> float | None:
    """The newest row a user refit was trained on (`trained_until_ts`), None for the shipped model."""
    until = model.meta.get("trained_until_ts")
    if not isinstance(until, (int, float)) or isinstance(until, bool):
        return None
    return float(until)


def _unseen(row: Mapping[str, Any], incumbent: StageModel | None) -> bool:
    """Whether `incumbent` was not trained on `row`: it is no user refit (no `trained_until_ts`
    in its meta), or the row is newer than the newest row it was trained on."""
    until = _trained_until(incumbent) if incumbent is not None else None
    return until is None or float(row["ts"]) > until


def fit_candidates_in_process(*args: Any) -> RefitResult:
    """`fit_candidates` in a fresh, lower-priority process, spawned (the server has threads, so no
    fork) and daemonic: a server that exits mid-fit neither waits for it nor leaves it behind. Falls
    back to the calling thread if no process can be started; a fit that takes longer than
    REFIT_TIMEOUT_S is abandoned (TimeoutError) and its process terminated."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    tasks, task_sender = ctx.Pipe(duplex=False)
    # The rows go through a pipe once the worker runs, not as the Process's arguments: a server
    # that exits while handing them over leaves the worker an end of file it quietly stops at (as
    # arguments, the child's start-up failed on truncated pickle data, with a traceback).
    worker = ctx.Process(target=_worker, args=(tasks, sender), name="heedls-refit", daemon=True)
    try:
        worker.start()
    except (OSError, RuntimeError) as exc:  # RuntimeError: spawning while the main module is importing
        log.warning("acceptance refit: no worker process (%s); fitting in this process", exc)
        task_sender.close()
        return fit_candidates(*args)
    finally:
        sender.close()  # the child has its own copy: EOF here once it is gone
        tasks.close()
    try:
        try:
            task_sender.send(args)
        except OSError as exc:
            raise RefitInterrupted(f"acceptance refit worker went away ({exc})") from exc
        finally:
            task_sender.close()
        if not receiver.poll(REFIT_TIMEOUT_S):
            raise TimeoutError(f"acceptance refit took longer than {REFIT_TIMEOUT_S:.0f} s")
        ok, payload = receiver.recv()
    except (EOFError, OSError) as exc:
        if _exiting():  # the interpreter's exit ends daemonic workers: the pipe breaks in any way then
            raise RefitInterrupted(f"acceptance refit stopped: the process is exiting ({type(exc).__name__})") from exc
        worker.join(timeout=1)
        if worker.exitcode is not None and worker.exitcode < 0:  # ended by a signal: the server is exiting
            raise RefitInterrupted(f"acceptance refit stopped (worker ended by signal {-worker.exitcode})") from exc
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


class RefitInterrupted(RuntimeError):
    """The refit was stopped from outside (the server exiting): nothing went wrong."""


def _exiting() -> bool:
    """Whether this process is exiting: its main thread is done (atexit handlers, among them
    multiprocessing's, which terminates daemonic workers, run after it) or the interpreter is
    finalizing. A refit thread that meets a broken pipe then was interrupted, not failed (it
    reported "worker died" with a traceback when the worker's end came before its exit code)."""
    return sys.is_finalizing() or not threading.main_thread().is_alive()


def _worker(tasks: Any, sender: Any) -> None:
    _lower_priority()
    try:
        args = tasks.recv()
    except (EOFError, OSError, pickle.UnpicklingError):
        return  # the server went away while handing the rows over
    finally:
        tasks.close()
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


__all__ = ["HOLDOUT_SHARE", "KEPT_TEST_LEVEL", "MIN_NEWER_ROWS", "fit_candidates", "fit_candidates_in_process", "logloss"]
