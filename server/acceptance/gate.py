"""The learned acceptance gate of the live server (CDHF cascade), behind `pipeline.gate.Gate`.

- mode `off`: shows everything and scores nothing; `stage1`: stage 1 may skip the provider call,
  stage 2 is scored for telemetry but never hides; `cascade`: both stages may act.
- Every decision carries score, threshold (None when that stage does not act) and model_version.
- The model is the user's own refit when one exists in `data_dir`, else the shipped default. A
  missing or corrupt model file never crashes anything: the gate falls back to showing everything
  and logs a warning.
- Refit (`observe`): decided events are kept as feature rows (no code text) in
  `data_dir/acceptance-rows.jsonl`. Once there are `min_events_for_refit` labelled rows with both
  classes well represented, a background thread has a separate process (`refit.py`; seconds of CPU
  that must not hold the server's GIL) fit a candidate on all but the newest 20 % and
  compares it with the current model on those newest events (a user model only on events newer
  than its training data); only if it is at least as good (AUC, then log-loss) and does not show
  clearly fewer of their accepts (refit._keeps_too_few) is the stage refitted on everything and
  installed (the previous model is kept as `acceptance-user.prev.json`); otherwise the stage that
  served stays (rollback), provider-specific stages included.
- Only the newest MAX_ROWS decided events are kept; the rows file is compacted past COMPACT_AT lines.
- A non-finite score or threshold shows the suggestion (and warns once): `NaN >= t` would hide it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from heedls.server.acceptance.adapt import DECISION_WINDOW, bias_from, clipped, decision_gap, logit, shifted
from heedls.server.acceptance.features import (
    FEATURES_KEY,
    SessionView,
    context_features,
    session_view,
    suggestion_only_features,
    suggestion_row,
)
from heedls.server.acceptance.model import AcceptanceModel, Kind, StageModel
from heedls.server.acceptance.refit import RefitInterrupted, fit_candidates, fit_candidates_in_process
from heedls.server.events import SuggestionEvent
from heedls.server.files import locked, temporary_sibling, write_atomic
from heedls.server.pipeline.gate import GateDecision

log = logging.getLogger(__name__)

USER_MODEL = "acceptance-user.json"
USER_MODEL_PREV = "acceptance-user.prev.json"
ROWS_FILE = "acceptance-rows.jsonl"
# Servers sharing a data directory append under a shared lock on it and compact under an exclusive
# one, so that no server's rows are lost in another's rewrite of the file.
ROWS_LOCK = "acceptance-rows.lock"
MIN_MINORITY = 20  # class-balance guard: at least this many of each class ...
MIN_MINORITY_SHARE = 0.05  # ... and at least this share
_SESSIONS_KEPT = 64  # sessions whose candidate windows the gate keeps (the oldest goes first)
REFIT_EVERY = 50  # new labelled rows between refit attempts
MAX_ROWS = 5000  # decided events kept (newest first), in memory and in the rows file
COMPACT_AT = 2 * MAX_ROWS  # lines in the rows file that start a rewrite down to MAX_ROWS
_ROW_CACHE = 512
# One refit at a time in the process, whichever gate starts it: each gate built by a settings
# change (gate mode, telemetry on/off) refits on its first rows, and the gates it replaced went on
# fitting. 100 changes in a long session left 20 refit threads, each holding its retired gate (5,000
# rows), 62 more descriptors and 345 MB more RSS.
_REFIT_SLOT = threading.Lock()


def default_model_path() -> Path:
    import heedls.server

    return Path(heedls.server.__file__).resolve().parent / "data" / "acceptance-default.json"


Warn = Callable[[str], None]


def _log_warning(message: str) -> None:
    log.warning("%s", message)


def _load(path: Path, warn: Warn = _log_warning) -> AcceptanceModel | None:
    try:
        model = AcceptanceModel.load(path)
    except (FileNotFoundError, NotADirectoryError):  # none yet (or no data directory to hold one)
        return None
    except Exception as exc:  # corrupt, truncated, wrong format: never fatal
        reason = f"{type(exc).__name__}: {exc}" if isinstance(exc, ValueError) else type(exc).__name__
        warn(f"acceptance model {path} unusable ({reason[:200]}); ignoring it")
        return None
    return model


class AcceptanceGate:
    def __init__(self, mode: str = "cascade", keep_accepted: float = 0.95, label: str = "accepted",
                 model: AcceptanceModel | None = None, data_dir: Path | None = None, refit: bool = True,
                 min_events_for_refit: int = 200, background: bool = True, prior: bool = True,
                 warn: Warn | None = None) -> None:
        self.mode = mode if mode in ("off", "stage1", "cascade") else "cascade"
        self.keep = keep_accepted if 0.0 < keep_accepted <= 1.0 else 0.95
        self.label = label if label in ("accepted", "persisted") else "accepted"
        self.model = model
        self.data_dir = data_dir
        self.refit_enabled = refit
        self.min_events = min(MAX_ROWS, max(20, int(min_events_for_refit)))
        self.background = background
        self.use_prior = prior  # refits learn from the shipped prior rows too (prior.py)
        self.requests = self.skipped = self.hidden = self.scored2 = 0
        self.refits = self.rollbacks = 0
        self.last_refit: dict[str, Any] | None = None
        self._rows: OrderedDict[str, dict[str, dict[str, float]]] = OrderedDict()
        # Unshifted model scores per stage and event, all from the model `_raw_version`: the user's own
        # bias (adapt.py) is learned from these and the outcomes.
        self._raw: dict[str, dict[str, float]] = {"context": {}, "suggestion": {}}
        self._raw_version: str | None = None
        self._bias_sums: dict[tuple[str, str], list[float]] = {}  # (session, stage) -> [Σ(y - p), Σ p(1-p)]
        # (session, stage) -> the session's latest unshifted logits, and the part of a negative bias
        # the decisions leave out (adapt.decision_gap), worked out at each decision
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._gaps: dict[tuple[str, str], float] = {}
        self._bias_seen: dict[str, None] = {}  # decisions already counted (observe() sees some twice)
        # stage 1's session view and provider, for stage 2
        self._views: OrderedDict[str, tuple[SessionView, str | None]] = OrderedDict()
        self._stored: dict[str, dict[str, Any]] = {}  # decided events by id, oldest first, <= MAX_ROWS
        self._since_refit = 0
        self._attempted = False  # no refit attempted yet in this process
        self._file_lock = threading.Lock()  # appends to the rows file vs its compaction
        self._file_lines = 0
        self._compacting = False
        self._pending: list[str] = []  # lines appended while the file is being compacted (here or elsewhere)
        # Where the user should hear about a problem (the editor's log in the server); each kind once.
        self._warn_to: Warn = warn or _log_warning
        self._warned: set[str] = set()
        if data_dir is not None:
            self._stored = self._read_rows()

    def reconfigure(self, config: Any, model_path: Path | None = None) -> None:
        """Apply a changed `GateConfig` (didChangeConfiguration) without losing counters or rows."""
        mode = str(getattr(config, "mode", self.mode))
        self.mode = mode if mode in ("off", "stage1", "cascade") else self.mode
        keep = float(getattr(config, "keep_accepted", self.keep))
        self.keep = keep if 0.0 < keep <= 1.0 else self.keep
        label = str(getattr(config, "label", self.label))
        self.label = label if label in ("accepted", "persisted") else self.label
        refit = bool(getattr(config, "refit", self.refit_enabled))
        learning_switched = refit != self.refit_enabled
        self.refit_enabled = refit
        self.min_events = min(MAX_ROWS, max(20, int(getattr(config, "min_events_for_refit", self.min_events))))
        # as a restart would: with refits on, the user's refitted model serves; with them off, the shipped one
        if self.mode != "off" and (self.model is None or learning_switched):
            self.model = _load_for(self.data_dir, self.refit_enabled, model_path)

    # ------------------------------------------------------------------ decisions
    @property
    def model_version(self) -> str | None:
        return self.model.version if self.model is not None else None

    def _stage(self, name: str, provider: str | None = None) -> StageModel | None:
        return self.model.stage_for(name, provider) if self.model is not None else None

    def _remember(self, event: SuggestionEvent, key: str, row: dict[str, float]) -> None:
        entry = self._rows.setdefault(event.id, {})
        entry[key] = row
        self._rows.move_to_end(event.id)
        while len(self._rows) > _ROW_CACHE:
            self._rows.popitem(last=False)

    def stage1(self, event: SuggestionEvent, history: Sequence[SuggestionEvent]) -> GateDecision:
        self.requests += 1
        stage = self._stage("context", event.provider)
        if self.mode == "off" or stage is None:
            return GateDecision(True, "stage1", model_version=self.model_version)
        view = session_view(event, history)
        self._views[event.id] = (view, event.provider)
        if len(self._views) > 8:  # only requests between their two stages are kept
            self._views.popitem(last=False)
        row = context_features(event, history, view)
        self._remember(event, "context", row)
        _attach(event, "context", row)
        score = self._score(stage, "context", event, row)
        threshold = self._threshold(stage, "context", event)
        show = score >= threshold or self._unscorable(score, threshold)
        if not show:
            self.skipped += 1
        return GateDecision(show, "stage1", _rounded(score), _rounded(threshold), self.model_version)

    def stage2(self, event: SuggestionEvent, history: Sequence[SuggestionEvent]) -> GateDecision:
        stage = self._stage("suggestion", event.provider)
        if self.mode == "off" or stage is None:
            return GateDecision(True, "stage2", model_version=self.model_version)
        context = self._rows.get(event.id, {}).get("context")
        seen = self._views.pop(event.id, None)
        served = context
        if context is None or seen is None:  # stage 1 did not score this request
            view = session_view(event, history)
            context = context_features(event, history, view)
        else:
            view, provider = seen
            if provider != event.provider:  # the engine fell back to another provider after stage 1:
                context = context_features(event, history, view)  # its context features differ (rare)
        only = suggestion_only_features(event, context, view)
        row = suggestion_row(context, only)
        self._remember(event, "suggestion", row)
        if served is not None and context is not served:
            # the stored stage-1 row stays as it was served; the stage-2 part says what differs
            # for this stage, so that `stored_features(event, "suggestion")` gives `row`
            _attach(event, "suggestion", {**{k: v for k, v in row.items() if k in served and served[k] != v}, **only})
        else:
            _attach(event, "suggestion", only)
        score = self._score(stage, "suggestion", event, row)
        self.scored2 += 1
        if self.mode != "cascade":  # scored for telemetry, never hides
            if not math.isfinite(score):
                self._unscorable(score, 0.0)
            return GateDecision(True, "stage2", _rounded(score), None, self.model_version)
        threshold = self._threshold(stage, "suggestion", event)
        show = score >= threshold or self._unscorable(score, threshold)
        if not show:
            self.hidden += 1
        return GateDecision(show, "stage2", _rounded(score), _rounded(threshold), self.model_version)

    def _unscorable(self, score: float, threshold: float) -> bool:
        """Whether a decision has no usable score or threshold (NaN or infinite: `NaN >= t` is
        False, which would hide): such a decision shows, and the user hears of it once."""
        if math.isfinite(score) and math.isfinite(threshold):
            return False
        self._warn_once("nonfinite", f"the acceptance model gave a non-finite score ({score!r}) or threshold "
                                     f"({threshold!r}) for a request: it is shown (model {self.model_version})")
        return True

    def _score(self, stage: StageModel, key: str, event: SuggestionEvent, row: dict[str, float]) -> float:
        """The model's score shifted by this user's own bias so far (label `accepted` only: persistence
        is known too late to adapt on)."""
        raw = stage.score(row)
        if not math.isfinite(raw):  # shown (see _unscorable); never part of the user's bias
            return raw
        if self._raw_version != self.model_version:  # scores of another model say nothing of this one's bias
            self._raw_version = self.model_version
            for scores in self._raw.values():
                scores.clear()
            self._bias_sums.clear()
            self._windows.clear()
            self._gaps.clear()
        scores = self._raw[key]
        scores[event.id] = raw
        if len(scores) > _ROW_CACHE:
            del scores[next(iter(scores))]  # oldest first: dicts keep insertion order
        if self.label != "accepted":
            return raw
        window = self._windows.get((event.session, key))
        if window is None:
            if len(self._windows) >= _SESSIONS_KEPT:  # a long-lived server sees many sessions
                oldest = next(iter(self._windows))
                del self._windows[oldest]
                self._gaps.pop(oldest, None)
            window = self._windows[(event.session, key)] = deque(maxlen=DECISION_WINDOW)
        window.append(logit(raw))
        sums = self._bias_sums.get((event.session, key))
        if sums is None:
            return raw
        return shifted(raw, bias_from(*sums))

    def _threshold(self, stage: StageModel, key: str, event: SuggestionEvent) -> float:
        """The stage's threshold for the keep target, lowered by the part of this user's negative bias
        that would otherwise hide more of what they accept (adapt.decision_gap)."""
        threshold = stage.threshold_for(self.keep)
        gap = self._gaps.get((event.session, key))
        return shifted(threshold, -gap) if gap else threshold

    def _learn_bias(self, event: SuggestionEvent) -> None:
        """A decision updates its session's running sums of the user's bias (adapt.py), once per
        event: O(1) per request, and every decision of the session counts, as in evaluation."""
        if event.id in self._bias_seen or event.outcome not in ("accepted", "rejected"):
            return
        self._bias_seen[event.id] = None
        if len(self._bias_seen) > _ROW_CACHE:
            del self._bias_seen[next(iter(self._bias_seen))]
        label = 1.0 if event.outcome == "accepted" else 0.0
        for key, scores in self._raw.items():
            p = scores.get(event.id)
            if p is not None:
                p = clipped(p)
                where = (event.session, key)
                sums = self._bias_sums.setdefault(where, [0.0, 0.0])
                sums[0] += label - p
                sums[1] += p * (1.0 - p)
                # off the request path: a decision, not a request, moves the bias
                stage = self._stage(key, event.provider)
                window = self._windows.get(where)
                if stage is not None and window is not None:
                    gap = decision_gap(bias_from(*sums), window, stage.threshold_for(self.keep), self.keep)
                    self._gaps[where] = gap

    def status(self) -> dict[str, Any]:
        gated = self.skipped + self.hidden
        return {
            "mode": self.mode, "model_version": self.model_version, "keep_accepted": self.keep,
            "requests": self.requests, "skipped": self.skipped, "hidden": self.hidden,
            # share of requests that showed nothing because of the gate (stage 1 skip or stage 2 hide)
            "hidden_share": round(gated / self.requests, 4) if self.requests else 0.0,
            "label": self.label, "user_events": len(self._labelled()), "refits": self.refits,
            "rollbacks": self.rollbacks, "last_refit": self.last_refit,
        }

    # ------------------------------------------------------------------ learning
    def observe(self, event: SuggestionEvent) -> None:
        self._learn_bias(event)
        if not self.refit_enabled or event.outcome not in ("accepted", "rejected"):
            return
        rows = self._rows.get(event.id)
        before = self._stored.get(event.id)
        if rows and "context" in rows:
            context, suggestion = rows.get("context"), rows.get("suggestion")
        elif before is not None:  # out of the row cache (a 600 s persistence check): same rows, new label
            context, suggestion = before.get("context"), before.get("suggestion")
        else:
            return  # not scored here (gate off, or from before a restart): nothing to learn from
        record = {"id": event.id, "session": event.session, "ts": event.ts, "provider": event.provider,
                  "accepted": event.label("accepted"),
                  "persisted": event.label("persisted"), "context": context,
                  "suggestion": suggestion}
        if record == before:
            return  # a persistence check that changed nothing: nothing to store again
        fresh = before is None
        if fresh and not (_finite_row(context) and _finite_row(suggestion) and math.isfinite(event.ts)):
            return  # a non-finite value (shown, see _unscorable) is nothing to learn from
        self._stored[event.id] = record
        if fresh and len(self._stored) > MAX_ROWS:
            del self._stored[next(iter(self._stored))]  # the oldest
        self._append_row(record)
        if fresh:
            self._since_refit += 1
        # The first attempt as soon as there are enough rows; then every REFIT_EVERY new ones (at
        # the cap the store stays at min_events rows: "== min_events" held on every decision)
        first = fresh and not self._attempted and len(self._stored) >= self.min_events
        if self._since_refit >= REFIT_EVERY or first:
            self.maybe_refit()

    def _labelled(self) -> list[dict[str, Any]]:
        return [r for r in self._stored.values() if r.get(self.label) is not None]

    def maybe_refit(self) -> bool:
        """Start a refit if the guards allow; returns whether one was started (or run). Whatever
        the outcome, the next attempt waits for REFIT_EVERY more rows."""
        self._since_refit = 0
        if _REFIT_SLOT.locked():  # a refit is running (this gate's or another's)
            return False
        labelled = self._labelled()
        if len(labelled) < self.min_events:
            return False
        self._attempted = True
        positives = sum(int(r[self.label]) for r in labelled)
        minority = min(positives, len(labelled) - positives)
        if minority < max(MIN_MINORITY, MIN_MINORITY_SHARE * len(labelled)):
            self.last_refit = {"ts": time.time(), "result": "skipped: class balance", "n": len(labelled)}
            return False
        rows = sorted(labelled, key=lambda r: r["ts"])
        if not _REFIT_SLOT.acquire(blocking=False):  # taken meanwhile
            return False
        if self.background:
            try:
                threading.Thread(target=self._refit, args=(rows,), name="heedls-gate-refit", daemon=True).start()
            except RuntimeError:  # no thread to be had (a process at its limit): this refit waits for the next
                _REFIT_SLOT.release()
                log.warning("acceptance refit: cannot start a thread; keeping the current model")
                return False
        else:
            self._refit(rows)
        return True

    def _refit(self, rows: list[dict[str, Any]]) -> None:
        try:
            self._refit_inner(rows)
        except RefitInterrupted as exc:  # the server is exiting: no failure, no traceback
            log.info("%s; keeping the current model", exc)
        except Exception:
            log.exception("acceptance refit failed; keeping the current model")
        finally:
            _REFIT_SLOT.release()

    def _refit_inner(self, rows: list[dict[str, Any]]) -> None:
        current = self.model
        args = (rows, current.to_json() if current is not None else None, self.keep, self.label,
                {stage: self._kind(stage) for stage in ("context", "suggestion")}, self.use_prior)
        # In the server (background) the fit runs in its own process: seconds of CPU that would
        # otherwise hold the GIL against every request.
        fitted, report = fit_candidates_in_process(*args) if self.background else fit_candidates(*args)
        stages: dict[str, StageModel] = {}
        for stage, data in fitted.items():
            try:
                stages[stage] = StageModel.from_json(data)
            except (ValueError, KeyError, TypeError) as exc:  # e.g. a non-finite weight: never installed
                report[stage] = {**(report.get(stage) or {}), "result": "rolled back", "reason": f"unusable: {exc}"}
        results = {stage: (report.get(stage) or {}).get("result") for stage in ("context", "suggestion")}
        rolled = [stage for stage, result in results.items() if result == "rolled back"]
        report["installed"] = sorted(stages)
        report["rolled_back"] = rolled
        if rolled:
            self.rollbacks += 1  # refit attempts in which a stage was rolled back
        if not stages:
            report["result"] = ("rolled back" if rolled else
                                "waiting" if "waiting" in results.values() else "kept: too few rows")
            self.last_refit = report
            log.info("acceptance refit installed nothing (%s): kept %s", report["result"], self.model_version)
            return
        # A refitted stage serves every provider (it was fitted on what this user's providers
        # actually produced), so its provider-specific defaults go; a stage that was not refitted
        # (rolled back, waiting) keeps exactly what served before, provider-specific stages included.
        merged = {k: v for k, v in (current.stages if current is not None else {}).items()
                  if k.split("@", 1)[0] not in stages}
        merged.update(stages)
        base = (current.version if current is not None else "none").split("+user")[0]
        model = AcceptanceModel(f"{base}+user{int(time.time())}", merged, self.label,
                                {"refit": report})
        if self.data_dir is not None:
            target = self.data_dir / USER_MODEL
            try:
                if target.exists():  # copied, not moved: a user model is on disk at every moment
                    write_atomic(self.data_dir / USER_MODEL_PREV, target.read_bytes())
                model.save(target)
            except OSError as exc:
                self._warn_once("save", f"cannot save the refitted acceptance model: {exc}")
        self.model = model  # one reference swap: decisions in flight see the old or the new model
        self.refits += 1
        report["result"] = "installed" if set(stages) == {"context", "suggestion"} else "partly installed"
        self.last_refit = report
        log.info("acceptance model refitted: %s (%s)", model.version, report["result"])

    def retire(self) -> None:
        """This gate is replaced (telemetry turned off, the learning moved): a refit still running
        saves nothing, and no row is written any more."""
        self.data_dir = None

    def _kind(self, stage: str) -> Kind:
        current = self._stage(stage)
        return current.kind if current is not None and current.kind in ("logreg", "gbm", "blend") else "logreg"

    # ------------------------------------------------------------------ persistence of rows
    def _read_rows(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if self.data_dir is None:
            return out
        path = self.data_dir / ROWS_FILE
        try:
            latest, lines = _latest_lines(path)
        except (FileNotFoundError, NotADirectoryError):
            return out
        except (OSError, UnicodeDecodeError) as exc:
            self._warn_once("read", f"cannot read acceptance rows: {exc}")
            return out
        for line in list(latest.values())[-MAX_ROWS:]:  # the newest, in the order first written
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if _valid_row(record):  # a hand-edited row (`"accepted": "yes"`) stopped every refit
                out[str(record["id"])] = _interned(record)
        self._file_lines = lines
        if lines > COMPACT_AT:
            self._compacting = True
            self._start_compaction()
        return out

    def _append_row(self, record: dict[str, Any]) -> None:
        if self.data_dir is None:
            return
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._file_lock:
            if self._compacting:
                self._pending.append(line)  # written once the compacted file is in place
                return
            try:
                self.data_dir.mkdir(parents=True, exist_ok=True)
                with locked(self.data_dir / ROWS_LOCK, shared=True, wait=False) as free:
                    if not free:  # another server is compacting the file: written with a later row
                        self._pending.append(line)
                        return
                    with open(self.data_dir / ROWS_FILE, "a", encoding="utf-8") as fh:
                        fh.writelines([*self._pending, line])
                    self._file_lines += len(self._pending)
                    self._pending.clear()
            except OSError as exc:
                # once, not on every decision: the gate keeps learning from this session in memory
                self._warn_once("append", f"cannot store acceptance rows in {self.data_dir} ({exc.strerror or exc}): "
                                          "the gate learns from this session only, and refits start over next time")
                return
            self._file_lines += 1
            if self._file_lines <= COMPACT_AT:
                return
            self._compacting = True
        self._start_compaction()

    def _start_compaction(self) -> None:
        if self.background:
            threading.Thread(target=self._compact, name="heedls-gate-rows", daemon=True).start()
        else:
            self._compact()

    def _compact(self) -> None:
        """Rewrite the rows file with its newest MAX_ROWS events (each one's last line, in the order
        they were first written), atomically (a temporary file of its own, then os.replace). Lines
        appended meanwhile wait in memory and follow the new file; so do those of another server
        sharing the directory (it finds the file locked)."""
        assert self.data_dir is not None
        path = self.data_dir / ROWS_FILE
        with locked(self.data_dir / ROWS_LOCK):  # exclusive: no other server appends meanwhile
            kept = 0
            tmp: Path | None = None
            try:
                latest, _ = _latest_lines(path)
                newest = list(latest.values())[-MAX_ROWS:]
                kept = len(newest)
                fresh = temporary_sibling(path)
                try:
                    with open(fresh, "w", encoding="utf-8") as out:
                        out.writelines(newest)
                except BaseException:
                    fresh.unlink(missing_ok=True)
                    raise
                tmp = fresh
            except (OSError, UnicodeDecodeError) as exc:
                self._warn_once("compact", f"cannot compact the acceptance rows in {path}: {exc}")
                tmp = None
            with self._file_lock:
                try:
                    if tmp is not None:
                        os.replace(tmp, path)
                    if self._pending:
                        with open(path, "a", encoding="utf-8") as fh:
                            fh.writelines(self._pending)
                except OSError as exc:
                    self._warn_once("compact", f"cannot compact the acceptance rows in {path}: {exc}")
                self._file_lines = kept + len(self._pending) if tmp is not None else 0
                self._pending.clear()
                self._compacting = False

    def _warn_once(self, kind: str, message: str) -> None:
        if kind in self._warned:
            return
        self._warned.add(kind)
        try:
            self._warn_to(message)
        except Exception:  # noqa: BLE001 - a warning must never break a decision
            log.warning("%s", message)


def _rounded(value: float) -> float | None:
    return round(value, 5) if math.isfinite(value) else None


def _finite_row(row: Any) -> bool:
    return row is None or all(map(math.isfinite, row.values()))


def _valid_row(record: Any) -> bool:
    """A rows-file record as the gate writes it: an id, a finite `ts`, labels that are null, a
    boolean or 0/1, and feature rows that are null or maps of finite numbers."""
    if not isinstance(record, dict) or not isinstance(record.get("id"), (str, int)) or isinstance(record.get("id"), bool):
        return False
    ts = record.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        return False
    for label in ("accepted", "persisted"):
        value = record.get(label)
        if value is not None and value not in (0, 1):  # True/False compare equal to 1/0
            return False
    for stage in ("context", "suggestion"):
        row = record.get(stage)
        if row is not None and not (isinstance(row, dict) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in row.values())):
            return False
    return True


def _interned(record: dict[str, Any]) -> dict[str, Any]:
    """A record read back, its feature names shared (a third of a row's memory otherwise)."""
    for stage in ("context", "suggestion"):
        row = record.get(stage)
        if isinstance(row, dict):
            record[stage] = {sys.intern(k): v for k, v in row.items()}
    return record


_ID_AT_START = re.compile(r'\{"id":("(?:[^"\\]|\\.)*")')


def _row_key(line: str) -> str | None:
    """The id of a whole line of the rows file (as written: it starts with the id), else None."""
    if not line.endswith("}\n"):
        return None  # torn by a crash
    match = _ID_AT_START.match(line)
    if match is not None:
        return match.group(1)
    try:
        return json.dumps(json.loads(line)["id"])
    except (ValueError, KeyError, TypeError):
        return None


def _latest_lines(path: Path) -> tuple[dict[str, str], int]:
    """The last whole line of each event in the rows file, in the order the events were first
    written, and how many lines the file has."""
    latest: dict[str, str] = {}
    lines = 0
    # errors="replace": one bad byte costs its line (which then fails to parse), not the whole
    # history, on every start (and compaction, which reads the same way, then drops the line)
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            lines += 1
            key = _row_key(line)
            if key is not None:
                latest[key] = line
    return latest, lines


def _attach(event: SuggestionEvent, stage: str, row: dict[str, float]) -> None:
    """Keep the decision-time features on the event: numbers survive a `nocode` export, so
    `heedls eval acceptance` can evaluate exports that carry no code text."""
    if event.extra is None:  # treat as empty
        event.extra = {}
    if not isinstance(event.extra, dict):
        return
    store = event.extra.setdefault(FEATURES_KEY, {})
    if isinstance(store, dict):
        store[stage] = row  # never changed afterwards; rounded to 4 decimals when serialised


def _load_for(data_dir: Path | None, refit: bool, model_path: Path | None,
              warn: Warn = _log_warning) -> AcceptanceModel | None:
    """The user's refitted model when there is a usable one, else the shipped default, else None."""
    model = None
    if refit and data_dir is not None:
        model = _load(data_dir / USER_MODEL, warn)
        if model is not None and not _complete(model):
            warn(f"acceptance model {data_dir / USER_MODEL} lacks a stage; ignoring it")
            model = None
    if model is None:
        path = model_path or default_model_path()
        model = _load(path, warn)
        if model is None:
            warn(f"no usable acceptance model at {path}: the gate shows every suggestion")
    return model


def _complete(model: AcceptanceModel) -> bool:
    """Both stages, and nothing but them (provider-specific ones included: `suggestion@local`)."""
    return {"context", "suggestion"} <= set(model.stages) and all(
        name.split("@", 1)[0] in ("context", "suggestion") for name in model.stages)


def build_gate(config: Any, data_dir: Path | None = None, model_path: Path | None = None,
               warn: Warn | None = None) -> AcceptanceGate:
    """The server's gate for a `GateConfig`; never raises (a bad model means showing everything)."""
    mode = str(getattr(config, "mode", "cascade"))
    keep = float(getattr(config, "keep_accepted", 0.95))
    label = str(getattr(config, "label", "accepted"))
    refit = bool(getattr(config, "refit", True))
    min_events = int(getattr(config, "min_events_for_refit", 200))
    say = warn or _log_warning
    model = _load_for(Path(data_dir) if data_dir is not None else None, refit, model_path, say) if mode != "off" else None
    return AcceptanceGate(mode, keep, label, model, Path(data_dir) if data_dir is not None else None, refit,
                          min_events, warn=say)


__all__ = ["AcceptanceGate", "build_gate", "default_model_path"]
