"""Leave-one-session-out evaluation of the acceptance cascade (the fixed protocol of DESIGN.md).

For each session S: fit on the labelled events of all other sessions and the usable prior rows
(calibration and threshold from out-of-fold scores of those sessions, and of other people's prior
rows when the events are people's), score the labelled events of S with S's own
threshold. All figures are then computed on the *pooled* held-out predictions (every labelled
event is predicted exactly once, by a model that never saw its session). See docs/acceptance.md.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from heedls.server.acceptance.adapt import online_decision_thresholds, online_shift, session_members
from heedls.server.acceptance.features import (
    STAGE_FEATURES,
    context_features,
    session_histories,
    stored_features,
    suggestion_features,
    vectorize,
)
from heedls.server.acceptance.folds import FoldJob, auto_jobs, fit_folds
from heedls.server.acceptance.model import FORMAT as MODEL_FORMAT
from heedls.server.acceptance.model import AcceptanceModel, Kind, StageModel
from heedls.server.acceptance.prior import Prior, PriorRows, targets_synthetic
from heedls.server.events import SuggestionEvent, json_kind, json_lines

log = logging.getLogger(__name__)

DEFAULT_KIND: Kind = "blend"
ECE_BINS = 10

# Copilot's published contextual-filter inputs, as far as the schema carries them: previous outcome,
# time since it, whitespace after the cursor, prefix and line lengths, cursor position, language,
# last character.
COPILOT_FEATURES: tuple[str, ...] = (
    "prev_accepted", "prev_rejected", "dt_prev_decision_log", "suffix_known", "ws_after_cursor",
    "prefix_chars_log", "line_chars_log", "rel_position", "language_python",
    "last_alnum", "last_space", "last_newline", "last_open", "last_close", "last_colon", "last_dot",
    "last_comma", "last_operator", "last_quote", "last_other",
)
LENGTH_FEATURES: tuple[str, ...] = ("sugg_chars_log",)


@dataclass
class Loaded:
    """What `read_events` made of a file: its events, the lines skipped as malformed and why the
    first of them was (`line 3: unknown outcome 'maybe'`), or None when none was skipped."""
    events: list[SuggestionEvent]
    skipped: int
    first_reason: str | None
    repeated: int = 0  # lines whose session and id an earlier line had (the last of them stands)


def read_events(path: Path | str) -> Loaded:
    """Every parseable event of a JSONL file (UTF-8, a leading BOM allowed), the malformed lines
    skipped and counted; the first one's reason is kept, for the user to see what is wrong (the
    caller says it: nothing is logged here). An id seen again (exports or push payloads put one
    after another, a store's raw snapshot rows) is one suggestion in its latest state, as
    `heedls telemetry report` reads it: the later line replaces the earlier, in its place. Only
    within its session: a snapshot never changes session, and other tools number their events
    per session (1, 2, … in each), so the same id in two sessions is two suggestions."""
    events: list[SuggestionEvent] = []
    where: dict[tuple[str, str], int] = {}
    skipped = repeated = 0
    first: str | None = None
    for number, data, reason in json_lines(path):
        if data is not None:
            try:
                event = SuggestionEvent.from_dict(data)
            except (ValueError, TypeError) as exc:
                reason = str(exc)
            else:
                at = where.get((event.session, event.id))
                if at is None:
                    where[(event.session, event.id)] = len(events)
                    events.append(event)
                else:
                    events[at] = event
                    repeated += 1
                continue
        skipped += 1
        if first is None:
            first = f"line {number}: {reason}"
    return Loaded(events, skipped, first, repeated)


# What tells the two other formats of `heedls telemetry export` (read only when no line is JSON)
PARQUET_MAGIC = b"PAR1"
EXPORT_FORMATS = {"csv": "CSV", "parquet": "Parquet"}


def export_format(path: Path | str) -> str | None:
    """"csv" or "parquet" when `path` looks like an export in that format (`telemetry export
    --format csv|parquet`), else None: Parquet's magic bytes, the CSV export's header line (read as
    read_events reads text: compressed, UTF-16…), or the name's extension. Only a regular file is
    opened again: a pipe (/dev/stdin) cannot be read twice."""
    from heedls.server.events import _open_text
    from heedls.server.telemetry.export import COLUMNS

    suffixes = [suffix.lower() for suffix in Path(path).suffixes]
    try:
        if Path(path).is_file():
            with open(path, "rb") as raw:
                if raw.read(len(PARQUET_MAGIC)) == PARQUET_MAGIC:
                    return "parquet"
            header = ",".join(COLUMNS[:3]) + ","
            with _open_text(path) as text:  # a line's start only: a binary file may have no line end
                if text.readline(len(header) + 1).lstrip("\ufeff").startswith(header):
                    return "csv"
    except (OSError, ValueError):  # unreadable now, or an archive of several files: the name decides
        pass
    return next((fmt for fmt in EXPORT_FORMATS if f".{fmt}" in suffixes), None)


def not_jsonl(path: Path | str, reader: str) -> str | None:
    """Why `path`, of which no line is JSON, is no JSONL file, when it is an export in another
    format (`reader` is the command reading it); None when it does not look like one."""
    fmt = export_format(path)
    if fmt is None:
        if _is_sqlite(path):  # the store itself, given where its export belongs
            fix = (f"report on a store with --store {path}" if reader.startswith("heedls telemetry report")
                   else f"write it with `heedls telemetry export --store {path} -o events.jsonl`")
            return f"{path} is a SQLite database (a heedls telemetry store?), not JSONL: {reader} reads JSONL; {fix}"
        return None
    return (f"{path} looks like {EXPORT_FORMATS[fmt]} (an export with --format {fmt}): {reader} reads JSONL; "
            "export with --format jsonl")


SQLITE_MAGIC = b"SQLite format 3\x00"


def _is_sqlite(path: Path | str) -> bool:
    try:
        if not Path(path).is_file():  # a pipe cannot be read twice
            return False
        with open(path, "rb") as raw:
            return raw.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def load_events(path: Path | str) -> tuple[list[SuggestionEvent], int]:
    """Every parseable event of a JSONL file, and how many lines were skipped as malformed (with a
    warning giving the first one's reason)."""
    loaded = read_events(path)
    if loaded.skipped:
        log.warning("%s: skipped %d malformed line(s); the first, %s", path, loaded.skipped, loaded.first_reason)
    return loaded.events, loaded.skipped


def canonical_order(events: Iterable[SuggestionEvent]) -> list[SuggestionEvent]:
    """The events sorted by (session, ts, id), whatever the order of the file's lines: the figures
    of an evaluation depend on the order of the rows (the trees' subsampling, the inner folds), so
    a file and its shuffled copy must give the same ones. Events equal in all three (duplicated
    ids) are ordered by their whole JSON. cups-dev and replays are already in this order."""
    ordered = sorted(events, key=_order_key)
    i = 0
    while i < len(ordered) - 1:  # ties are rare (duplicate ids): sort each run by content
        j = i + 1
        while j < len(ordered) and _order_key(ordered[j]) == _order_key(ordered[i]):
            j += 1
        if j - i > 1:
            ordered[i:j] = sorted(ordered[i:j], key=lambda e: e.to_json())
        i = j
    return ordered


def _order_key(event: SuggestionEvent) -> tuple[str, float, str]:
    return event.session, event.ts, event.id


def check_keep(keep: float) -> None:
    """Raises ValueError unless 0 < keep <= 1 (the share of accepted suggestions to keep)."""
    if not 0.0 < keep <= 1.0:  # also NaN
        raise ValueError(f"keep must be in (0, 1], the share of accepted suggestions to keep; got {keep:g}")


MODEL_STAGE_FIELDS = ("stage", "features", "kind", "keep_accepted", "threshold")


def load_model(path: Path | str, stages: Sequence[str] = ()) -> AcceptanceModel:
    """An acceptance model file, checked: raises ValueError with a one-line reason (unreadable, not
    JSON, not a model file, a stage lacking a field, none of the `stages` asked for)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ValueError("it is a directory, not a file") from None
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except UnicodeDecodeError:
        raise ValueError("not a JSON text file (not UTF-8)") from None
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {json_kind(data)}, not a model object")
    if data.get("format") != MODEL_FORMAT:
        raise ValueError(f"not a {MODEL_FORMAT} model file (its 'format' is {data.get('format')!r})")
    stage_data = data.get("stages")
    if not isinstance(stage_data, dict) or not stage_data:
        raise ValueError("it has no stages")
    for name, stage in stage_data.items():
        if not isinstance(stage, dict):
            raise ValueError(f"stage {name!r} is not an object")
        missing = [key for key in MODEL_STAGE_FIELDS if key not in stage]
        if missing:
            raise ValueError(f"stage {name!r} has no {', '.join(repr(k) for k in missing)}")
    try:
        model = AcceptanceModel.from_json(data)
    except ValueError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"malformed model file ({type(exc).__name__}: {exc})") from exc
    for stage_name in stages:
        if stage_name not in model.stages:
            raise ValueError(f"it has no {stage_name!r} stage (it has: {', '.join(sorted(model.stages)) or 'none'})")
    return model


def load_prior(path: Path | str) -> Prior:
    """A prior rows file; raises ValueError with the reason when it is not one."""
    try:
        return Prior.load(path)
    except IsADirectoryError:
        raise ValueError("it is a directory, not a file") from None
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except (AttributeError, IndexError, TypeError) as exc:  # JSON of another shape
        raise ValueError(f"malformed prior file ({type(exc).__name__}: {exc})") from exc
    except OSError as exc:  # gzip.BadGzipFile among them
        raise ValueError(str(exc)) from exc


@dataclass
class Dataset:
    stage: str
    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    rows: list[dict[str, float]]
    events: list[SuggestionEvent]


def build_dataset(events: Sequence[SuggestionEvent], stage: str, label: str = "accepted",
                  progress: Callable[[int, int], None] | None = None) -> Dataset:
    """Labelled rows of `stage`. Unlabelled events still count as history for the others."""
    histories = session_histories(events)
    rows: list[dict[str, float]] = []
    ys: list[int] = []
    groups: list[str] = []
    kept: list[SuggestionEvent] = []
    for i, (event, history) in enumerate(zip(events, histories)):
        if progress is not None:
            progress(i, len(events))
        y = event.label("persisted" if label == "persisted" else "accepted")
        if y is None:
            continue
        stored = stored_features(event, stage) if event.prefix is None and event.suggestion is None else None
        if stored is not None:
            row = stored  # a nocode export: the gate's decision-time features stand in for the code
        elif stage == "context":
            row = context_features(event, history)
        else:
            row = suggestion_features(event, history)
        rows.append(row)
        ys.append(y)
        groups.append(event.session)
        kept.append(event)
    names = STAGE_FEATURES[stage]
    return Dataset(stage, vectorize(rows, names), np.asarray(ys, dtype=float), np.asarray(groups, dtype=object),
                   rows, kept)


# --------------------------------------------------------------------------- metrics


def auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Mann-Whitney AUC with tied scores counted half; None when one class is missing."""
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(p, kind="mergesort")
    # each run of tied scores gets its mean rank (1-based), vectorised: the bootstrap calls this 1,000 times
    _, run_of, run_sizes = np.unique(p[order], return_inverse=True, return_counts=True)
    run_ends = np.cumsum(run_sizes)
    ranks = np.empty(p.size)
    ranks[order] = ((run_ends - run_sizes + run_ends - 1) / 2.0 + 1.0)[run_of]
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def ece(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float | None:
    """Expected calibration error: 10 equal-width probability bins, weighted by bin size."""
    if y.size == 0:
        return None
    idx = _ece_bin(p, bins)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += mask.sum() / y.size * abs(float(p[mask].mean()) - float(y[mask].mean()))
    return float(total)


def _ece_bin(p: np.ndarray, bins: int) -> np.ndarray:
    """Each score's bin of `bins` equal-width ones (a score of 1.0 in the last)."""
    out: np.ndarray = np.minimum((p * bins).astype(int), bins - 1)
    return out


def metrics(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray, stage: str) -> dict[str, Any]:
    show = p >= thresholds
    neg, pos = y == 0, y == 1
    return {
        "auc": _r(auc(y, p)),
        "hidden_rejected_at_95": _r(float((~show[neg]).mean())) if neg.any() else None,
        "accepted_kept": _r(float(show[pos].mean())) if pos.any() else None,
        "ece": _r(ece(y, p)),
        "requests_avoided": _r(float((~show).mean())) if stage == "context" and y.size else None,
        "shown_share": _r(float(show.mean())) if y.size else None,
    }


def ece_by_chance(p: np.ndarray, reps: int = 1000, seed: int = 0, bins: int = ECE_BINS) -> dict[str, float] | None:
    """The ECE a perfectly calibrated model with these very scores shows by chance alone: outcomes
    drawn as Bernoulli(p), `reps` times (seeded). Its mean and 90th percentile. With a few hundred
    events a calibrated model's ECE is not near 0: at cups-dev's 464 decisions it averages about
    0.046, so an ECE is judged against this, not against 0."""
    if p.size == 0:
        return None
    rng = np.random.default_rng(seed)
    idx = _ece_bin(p, bins)
    counts = np.bincount(idx, minlength=bins).astype(float)
    mean_p = np.bincount(idx, weights=p, minlength=bins) / np.maximum(counts, 1.0)
    one_hot = np.zeros((p.size, bins))
    one_hot[np.arange(p.size), idx] = 1.0
    values = np.empty(reps)
    chunk = max(1, 4_000_000 // p.size)  # draws in blocks of ~4M: a 100k-event export stays at ~30 MB
    for start in range(0, reps, chunk):
        draws = (rng.random((min(chunk, reps - start), p.size)) < p).astype(float)
        mean_y = (draws @ one_hot) / np.maximum(counts, 1.0)
        values[start:start + draws.shape[0]] = (np.abs(mean_y - mean_p) * (counts / p.size)).sum(axis=1)
    return {"mean": round(float(values.mean()), 4), "p90": round(float(np.percentile(values, 90)), 4)}


INTERVAL_LEVEL = 0.90
BOOTSTRAP_REPS = 1000
_INTERVAL_KEYS = ("auc", "hidden_rejected_at_95", "accepted_kept", "ece", "requests_avoided")


def session_intervals(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray, groups: np.ndarray, stage: str,
                      reps: int = BOOTSTRAP_REPS, seed: int = 0) -> dict[str, list[float]] | None:
    """90 % percentile intervals of the figures under a bootstrap over sessions (the unit the
    protocol holds out: a session's decisions move together), from the held-out predictions as
    they are, no refitting. Says how far a figure may sit from a target by chance alone: with
    ten sessions, "accepted kept" spans several points. None with fewer than two sessions.

    A resample's figures are those of its sessions' events put together (a session drawn k times
    counts k times), computed as sums weighted by how often each session was drawn: no resample is
    built and nothing is sorted per draw (each draw sorted its events for the AUC: at 10^6 events
    the 1,000 draws took minutes)."""
    members = session_members(groups)
    if len(members) < 2:
        return None
    sessions = len(members)
    session_of = np.empty(y.size, dtype=np.intp)
    for s, idx in enumerate(members):
        session_of[idx] = s
    pos, neg = y == 1, y == 0
    show = p >= thresholds

    def per_session(mask: np.ndarray) -> np.ndarray:
        return np.bincount(session_of[mask], minlength=sessions).astype(float)

    n_all, n_pos, n_neg = per_session(np.ones(y.size, bool)), per_session(pos), per_session(neg)
    pos_shown, neg_hidden, hidden = per_session(pos & show), per_session(neg & ~show), per_session(~show)
    # the AUC's tie runs (a tied positive-negative pair counts half), in score order
    _, run = np.unique(p, return_inverse=True)
    run = run.reshape(-1)
    runs = int(run.max()) + 1 if run.size else 0
    pos_run, neg_run, pos_of, neg_of = run[pos], run[neg], session_of[pos], session_of[neg]
    # the ECE's bins: per session, events, Σ score and Σ label in each
    bins = _ece_bin(p, ECE_BINS)
    cell = session_of * ECE_BINS + bins
    size = sessions * ECE_BINS
    bin_n = np.bincount(cell, minlength=size).reshape(sessions, ECE_BINS).astype(float)
    bin_p = np.bincount(cell, weights=p, minlength=size).reshape(sessions, ECE_BINS)
    bin_y = np.bincount(cell, weights=y.astype(float), minlength=size).reshape(sessions, ECE_BINS)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in _INTERVAL_KEYS}
    for _ in range(reps):
        counts = np.bincount(rng.integers(0, sessions, sessions), minlength=sessions).astype(float)
        total, w_pos, w_neg = counts @ n_all, counts @ n_pos, counts @ n_neg
        figures: dict[str, float | None] = {"auc": None, "hidden_rejected_at_95": None, "accepted_kept": None}
        if w_pos > 0 and w_neg > 0:
            at_pos = np.bincount(pos_run, weights=counts[pos_of], minlength=runs)
            at_neg = np.bincount(neg_run, weights=counts[neg_of], minlength=runs)
            below = np.cumsum(at_neg) - at_neg
            figures["auc"] = float((at_pos * (below + 0.5 * at_neg)).sum() / (w_pos * w_neg))
        if w_neg > 0:
            figures["hidden_rejected_at_95"] = float(counts @ neg_hidden / w_neg)
        if w_pos > 0:
            figures["accepted_kept"] = float(counts @ pos_shown / w_pos)
        in_bin = counts @ bin_n
        filled = in_bin > 0
        gaps = np.abs(counts @ bin_p - counts @ bin_y)[filled] / in_bin[filled]
        figures["ece"] = float((in_bin[filled] / total * gaps).sum())
        figures["requests_avoided"] = float(counts @ hidden / total) if stage == "context" else None
        for key in _INTERVAL_KEYS:
            value = _r(figures[key])
            if value is not None:
                draws[key].append(value)
    tail = (1.0 - INTERVAL_LEVEL) / 2.0 * 100.0
    return {key: [round(float(np.percentile(values, q)), 4) for q in (tail, 100.0 - tail)]
            for key, values in draws.items() if len(values) >= reps // 2}


def _held_out_figures(data: Dataset, p: np.ndarray, thresholds: np.ndarray, stage: str,
                      seed: int) -> dict[str, Any]:
    """The protocol's figures of these scores, with how far chance alone moves them."""
    return {**metrics(data.y, p, thresholds, stage),
            "intervals": session_intervals(data.y, p, thresholds, data.groups, stage, seed=seed),
            "ece_chance": ece_by_chance(p, seed=seed)}


def _r(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 4)


# --------------------------------------------------------------------------- protocol


def prior_rows(data: Dataset, prior: Prior | None, features: Sequence[str] | None = None,
               label: str = "accepted") -> tuple[PriorRows | None, list[str]]:
    """The prior's rows usable for `data` (none of its sessions; no replay prior for replayed data;
    none for a label the rows do not carry), with the sessions they may calibrate as."""
    if prior is None:
        return None, []
    found = prior.rows(data.stage, features or STAGE_FEATURES[data.stage], set(data.groups.tolist()),
                       targets_synthetic(data.events), label)
    return (found, found.used) if found is not None else (None, [])


def event_timing(events: Sequence[SuggestionEvent]) -> tuple[np.ndarray, np.ndarray]:
    """(shown at, decided at) of each event, in seconds: what the user's online bias is learned in."""
    return (np.array([e.ts for e in events], dtype=float),
            np.array([e.ts + (e.decision_ms or 0.0) / 1000.0 for e in events], dtype=float))


def with_user_bias(data: Dataset, p: np.ndarray) -> np.ndarray:
    """Each score shifted by its user's own bias (adapt.online_shift), as the live gate does."""
    return online_shift(p, data.y, data.groups, *event_timing(data.events))


def with_decision_gap(data: Dataset, p: np.ndarray, thresholds: np.ndarray, keep: float) -> np.ndarray:
    """Each event's threshold as the live gate compares it with the bias-shifted score
    (adapt.online_decision_thresholds); `p`: the unshifted scores."""
    return online_decision_thresholds(p, data.y, data.groups, *event_timing(data.events), thresholds, keep)


def loso_predict(data: Dataset, features: Sequence[str], kind: Kind, keep: float, seed: int = 0,
                 params: dict[str, Any] | None = None, prior: PriorRows | None = None,
                 progress: Callable[[int, int], None] | None = None, adapt: bool = False, jobs: int = 1,
                 ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Held-out calibrated scores and the threshold each was judged against (from its training folds).
    `prior` rows (in `features` order) join every fold's training data; they never include a session
    of `data` (`prior_rows`). `jobs` > 1 fits the sessions in worker processes (the same results)."""
    cols = [STAGE_FEATURES[data.stage].index(name) for name in features]
    job = FoldJob(data.stage, tuple(features), data.X[:, cols], data.y, data.groups, kind, keep, seed, params, prior)
    p = np.zeros(data.y.size)
    thr = np.zeros(data.y.size)
    folds: list[dict[str, Any]] = []
    sessions = sorted(set(data.groups.tolist()))
    results = fit_folds(job, sessions, jobs, progress)
    for session, test in zip(sessions, session_members(data.groups)):  # both in sorted session order
        p[test], threshold = results[session]
        thr[test] = threshold
        folds.append({"session": session, "n": int(test.size), "threshold": round(threshold, 4)})
    if adapt:  # per session, from that session's own held-out scores
        thr = with_decision_gap(data, p, thr, keep)
        p = with_user_bias(data, p)
    return p, thr, folds


def evaluate(events: Sequence[SuggestionEvent], stage: str, label: str = "accepted", keep: float = 0.95,
             kind: Kind = DEFAULT_KIND, baselines: bool = False, pretrained: AcceptanceModel | None = None,
             seed: int = 0, progress: Callable[[int, int], None] | None = None,
             prior: Prior | None = None, fold_progress: Callable[[int, int], None] | None = None,
             adapt: bool = True, jobs: int = 1) -> dict[str, Any]:
    """`progress(i, n)`: feature rows built; `fold_progress(i, n)`: held-out sessions fitted.
    `adapt`: shift scores by each user's own online bias, as the gate does (label `accepted` only).
    `jobs`: worker processes for the held-out sessions' fits (0: as many as pay off, `folds.auto_jobs`)."""
    if stage not in STAGE_FEATURES:
        raise ValueError(f"unknown stage {stage!r}")
    check_keep(keep)
    # the protocol's figures must not depend on the order of the file's lines
    data = build_dataset(canonical_order(events), stage, label, progress)
    sessions = sorted(set(data.groups.tolist()))
    # `keep`: the target the thresholds were chosen for (the contract's key says 95, `--keep` may not)
    result: dict[str, Any] = {"n": int(data.y.size), "positives": int(data.y.sum()), "stage": stage,
                              "label": label, "keep": keep, "sessions": len(sessions)}
    adapt = adapt and label == "accepted"  # persistence is known too late to adapt on
    adapted = ("; each score is then shifted by its user's own bias, learned online from the model's scores "
               "and the outcomes of that session's events decided before it, and a negative bias lowers the "
               "decisions only as far as the session's earlier scores say keeps the target share of that "
               "user's expected accepts" if adapt else "")
    if pretrained is not None:
        if stage not in pretrained.stages:
            raise ValueError(f"the model file has no {stage!r} stage")
        p = np.zeros(data.y.size)
        thr = np.zeros(data.y.size)
        used: set[str] = set()
        for i, (event, row) in enumerate(zip(data.events, data.rows)):
            stage_model = pretrained.stage_for(stage, event.provider)  # as the gate picks it
            assert stage_model is not None
            used.add(f"{stage_model.stage}:{stage_model.kind}")
            p[i] = stage_model.score(row)
            thr[i] = stage_model.threshold_for(keep)
        if adapt:
            thr = with_decision_gap(data, p, thr, keep)
            p = with_user_bias(data, p)
        result.update(_held_out_figures(data, p, thr, stage, seed))
        result["model"] = {"kind": sorted(used), "version": pretrained.version, "user_bias": adapt}
        result["protocol"] = (f"pretrained: shipped model {pretrained.version} scored on every labelled event, "
                              f"no fitting; its threshold for keep>={keep:g} of accepted was chosen on its own "
                              f"training data{adapted}; figures pooled over all events")
    elif len(sessions) < 2:
        result.update({k: None for k in ("auc", "hidden_rejected_at_95", "accepted_kept", "ece",
                                         "requests_avoided", "shown_share")})
        result["model"] = {"kind": kind}
        result["protocol"] = "leave-one-session-out needs at least two sessions with labelled events"
    else:
        rows, sources = prior_rows(data, prior, label=label)
        # every fold fits the prior's rows as well: they count towards the work as the file's do
        fitted = int(data.y.size) + (0 if rows is None else int(rows.y.size))
        workers = auto_jobs(fitted, len(sessions)) if jobs <= 0 else jobs
        p, thr, folds = loso_predict(data, STAGE_FEATURES[stage], kind, keep, seed, prior=rows,
                                     progress=fold_progress, adapt=adapt, jobs=workers)
        result.update(_held_out_figures(data, p, thr, stage, seed))
        calibrating = 0 if rows is None else int(rows.calibrates.sum())
        result["model"] = {"kind": kind, "features": len(STAGE_FEATURES[stage]),
                           "prior_rows": 0 if rows is None else int(rows.y.size), "prior_sources": sources,
                           "prior_rows_calibrating": calibrating, "user_bias": adapt}
        with_prior = ("" if rows is None else
                      f" plus {rows.y.size} prior rows from other data ({', '.join(sources)}; none of them from "
                      "this file's sessions)")
        calibrated_on = ("those training sessions only" if not calibrating else
                         f"those training sessions and of the {calibrating} prior rows of other people (each of "
                         "their sessions a fold of its own)")
        result["protocol"] = (
            f"leave-one-session-out over {len(sessions)} sessions: for each session, fit on the other "
            f"sessions{with_prior}; calibration (Platt) and the threshold keeping >= "
            f"{keep:g} of accepted are chosen on out-of-fold scores of {calibrated_on}; "
            f"the held-out session is scored once{adapted}; all figures pooled over the held-out predictions; "
            f"ECE over {ECE_BINS} equal-width bins; label={label}")
        result["folds"] = folds
    if baselines and len(sessions) >= 2:  # fitted leave-one-session-out, as their protocol has it
        result["baselines"] = run_baselines(data, stage, keep, seed)
        if pretrained is not None:
            result["protocol"] += ("; the baselines beside it are fitted leave-one-session-out on this file "
                                   "(thresholds from the training folds)")
    return result


def run_baselines(data: Dataset, stage: str, keep: float, seed: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # Always show: predicts the training folds' acceptance rate, hides nothing.
    p = np.zeros(data.y.size)
    for session in sorted(set(data.groups.tolist())):
        test = data.groups == session
        p[test] = float(data.y[~test].mean()) if (~test).any() else 0.5
    out["always_show"] = metrics(data.y, p, np.zeros(data.y.size), stage)
    # A constant score ranks nothing: AUC 0.5 by definition (pooling the per-fold constants would
    # otherwise turn the leave-one-out shift of the training rate into a spurious ranking).
    out["always_show"]["auc"] = 0.5 if data.y.min() != data.y.max() else None
    p, thr, _ = loso_predict(data, COPILOT_FEATURES, "logreg", keep, seed)
    out["copilot_filter"] = metrics(data.y, p, thr, stage)
    if stage == "suggestion":
        p, thr, _ = loso_predict(data, LENGTH_FEATURES, "logreg", keep, seed)
        out["suggestion_length"] = metrics(data.y, p, thr, stage)
    return out


def iter_labelled(events: Iterable[SuggestionEvent], label: str) -> Iterable[SuggestionEvent]:
    return (e for e in events if e.label("persisted" if label == "persisted" else "accepted") is not None)


__all__ = ["Loaded", "StageModel", "auc", "build_dataset", "canonical_order", "check_keep", "ece", "ece_by_chance",
           "evaluate", "load_events", "load_model", "load_prior", "loso_predict", "metrics", "prior_rows", "read_events"]
