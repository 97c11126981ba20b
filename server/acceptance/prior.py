"""Prior rows: labelled feature rows from *other* data that every acceptance fit learns from as well.

A user, or a session held out by `heedls eval acceptance`, has a few hundred decisions at most, and a
model fitted on that alone is mostly noise (on cups-dev, going from 4 to 9 training sessions moves
the suggestion-stage AUC from 0.62 to 0.71). heedls therefore ships labelled rows (feature values and
labels only, no code text) from a proxy-labelled replay of real code and from real human decisions,
and adds them to the training rows of every fit: the shipped model, each fold of the evaluation and
the user's own refit. Calibration and the keep-X %-of-accepted threshold are chosen on out-of-fold
scores of the target data and, when the target is people, of the human sources' rows (each of their
sessions a fold of its own): other people, never the proxy-labelled replay (`Prior.rows`). In the
user's own refit the prior only trains (`PriorRows.only_training`): its threshold is for that user.

A source is never used on data it could overlap: it is dropped when the target shares a session id
with it, and a replay source is dropped for synthetic (replayed) targets, whose projects could be the
same ones. See docs/acceptance.md ("Prior rows").
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

log = logging.getLogger(__name__)

FORMAT = "heedls.acceptance-prior/1"
PRIOR_LABEL = "accepted"  # what the shipped rows are labelled with (persistence is not in them)
SourceKind = Literal["replay", "human"]


@dataclass(frozen=True)
class StageRows:
    features: tuple[str, ...]
    X: np.ndarray
    y: np.ndarray
    groups: tuple[str, ...] | None = None  # each row's session id (files before 2026-11-29 have none)


class PriorRows(NamedTuple):
    X: np.ndarray
    y: np.ndarray
    used: list[str]  # names of the sources the rows come from
    groups: np.ndarray  # per row: "source:session" where it may join calibration, "" where it only trains

    @property
    def calibrates(self) -> np.ndarray:
        """Per row: may it join calibration and the threshold (as a session of its own)?"""
        mask: np.ndarray = self.groups != ""
        return mask

    def only_training(self) -> PriorRows:
        """The same rows, none of them calibrating."""
        return self._replace(groups=np.full(self.y.size, "", dtype=object))


@dataclass(frozen=True)
class PriorSource:
    name: str
    kind: SourceKind
    sessions: frozenset[str]
    stages: Mapping[str, StageRows]
    meta: Mapping[str, Any]

    def usable_for(self, target_sessions: set[str], target_synthetic: bool) -> bool:
        if self.sessions & target_sessions:
            return False  # the same data (or part of it): it would leak the held-out session
        return not (self.kind == "replay" and target_synthetic)


@dataclass(frozen=True)
class Prior:
    sources: tuple[PriorSource, ...]

    def rows(self, stage: str, features: Sequence[str], target_sessions: set[str], target_synthetic: bool,
             label: str = PRIOR_LABEL) -> PriorRows | None:
        """The usable rows of `stage` in the order of `features` (a feature a source lacks is 0, as
        unknown values are), their labels, the names of the sources used and, per row, the session
        it may also calibrate as (below); None if none is usable, or if the target learns another
        label (`persisted`) than the rows carry.

        Rows of people (a `human` source with session ids) may also join calibration and the
        threshold when the target is people too: for a held-out person or a new user, other people
        are as much "other people" as the target's own training sessions, and ten more of them
        steady a threshold set on a few hundred decisions. Replayed rows only ever train: their
        labels are a proxy, and their scores say nothing of how people decide."""
        if label != PRIOR_LABEL:
            return None
        blocks: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        groups: list[np.ndarray] = []
        used: list[str] = []
        for source in self.sources:
            rows = source.stages.get(stage)
            if rows is None or rows.y.size == 0 or not source.usable_for(target_sessions, target_synthetic):
                continue
            index = {name: i for i, name in enumerate(rows.features)}
            X = np.zeros((rows.y.size, len(features)))
            for j, name in enumerate(features):
                if name in index:
                    X[:, j] = rows.X[:, index[name]]
            blocks.append(X)
            labels.append(rows.y)
            calibrates = source.kind == "human" and not target_synthetic and rows.groups is not None
            groups.append(np.array([f"{source.name}:{g}" for g in rows.groups] if calibrates and rows.groups
                                   else [""] * rows.y.size, dtype=object))
            used.append(source.name)
        if not blocks:
            return None
        return PriorRows(np.vstack(blocks), np.concatenate(labels), used, np.concatenate(groups))

    # ------------------------------------------------------------------ on disk

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "sources": [{
            "name": s.name, "kind": s.kind, "sessions": sorted(s.sessions), "meta": dict(s.meta),
            "stages": {stage: {"features": list(r.features), "y": [int(v) for v in r.y],
                               "X": [[_round(v) for v in row] for row in r.X.tolist()],
                       **({"groups": list(r.groups)} if r.groups is not None else {})}
                       for stage, r in s.stages.items()},
        } for s in self.sources]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Prior:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        sources = []
        for s in data["sources"]:
            if s["kind"] not in ("replay", "human"):
                raise ValueError(f"unknown prior source kind {s['kind']!r}")
            stages = {}
            for stage, r in s["stages"].items():
                features = tuple(str(f) for f in r["features"])
                X = np.asarray(r["X"], dtype=float).reshape(len(r["y"]), len(features))
                groups = r.get("groups")
                if groups is not None and len(groups) != len(r["y"]):
                    raise ValueError(f"{len(groups)} session ids for {len(r['y'])} rows")
                stages[stage] = StageRows(features, X, np.asarray(r["y"], dtype=float),
                                          tuple(map(str, groups)) if groups is not None else None)
            sources.append(PriorSource(str(s["name"]), s["kind"], frozenset(map(str, s["sessions"])), stages,
                                       dict(s.get("meta", {}))))
        return cls(tuple(sources))

    def save(self, path: Path | str) -> None:
        data = json.dumps(self.to_json(), separators=(",", ":")).encode()
        with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as fh:
            fh.write(data)  # mtime 0: the same rows give the same bytes (a reproducible shipped file)

    @classmethod
    def load(cls, path: Path | str) -> Prior:
        """Raises OSError (unreadable) or ValueError (anything malformed: gzip, JSON or layout)."""
        try:
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return cls.from_json(json.load(fh))
        except (zlib.error, EOFError, KeyError, TypeError) as exc:
            raise ValueError(f"malformed prior file: {type(exc).__name__}: {exc}") from exc


def _round(value: float) -> float:
    return float(f"{value:.5g}")


def shipped_prior_path() -> Path:
    return Path(str(resources.files("heedls.server") / "data" / "acceptance-prior.json.gz"))


def load_shipped_prior() -> Prior | None:
    """The prior shipped with heedls, or None (with a warning) when it is missing or unreadable."""
    path = shipped_prior_path()
    try:
        return Prior.load(path)
    except (OSError, ValueError) as exc:
        log.warning("acceptance prior %s not usable (%s): fitting on the target data alone", path, exc)
        return None


def targets_synthetic(events: Sequence[Any]) -> bool:
    """Whether any event was made by a replay (`extra.synthetic`): its projects may be a replay prior's."""
    return any(bool((getattr(e, "extra", None) or {}).get("synthetic")) for e in events)


__all__ = ["FORMAT", "PRIOR_LABEL", "Prior", "PriorRows", "PriorSource", "StageRows", "load_shipped_prior", "shipped_prior_path",
           "targets_synthetic"]
