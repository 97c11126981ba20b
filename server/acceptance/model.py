"""Small acceptance models: fit with NumPy, serve in pure Python, saved as versioned JSON.

Two learners, both cheap to evaluate (tens of microseconds in pure Python):
- `LogReg`: L2-regularised logistic regression on standardised features (Newton's method);
- `Trees`: a compact gradient-boosted ensemble of shallow trees (histogram splits, Newton leaves).
A `StageModel` combines them (`kind` = logreg | gbm | blend: mean of the two logits), then maps the
raw logit through a Platt calibration fitted on *out-of-fold* scores of its own training data, and
carries the threshold that keeps the target share of accepted suggestions (see `policy.py`).

No scikit-learn at serve time or evaluation time: everything here needs NumPy only, and serving a
fitted model (`StageModel.score`) needs nothing but the standard library.
"""

from __future__ import annotations

import contextlib
import json
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
from heedls.server.acceptance.policy import positive_quantiles, threshold_for_keep
from heedls.server.acceptance.prior import PriorRows
from heedls.server.files import replaced_atomically

FORMAT = "heedls.acceptance/1"
Kind = str  # "logreg" | "gbm" | "blend"
KINDS = ("logreg", "gbm", "blend")
# L2 on standardised weights: ~90 weak, correlated features and a few hundred decisions per user
# call for firm shrinkage; with thousands of events the penalty fades on its own.
DEFAULT_L2 = 30.0


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(z, -35.0, 35.0)))
    return out


def _psig(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-min(z, 35.0)))
    e = math.exp(max(z, -35.0))
    return e / (1.0 + e)


# --------------------------------------------------------------------------- logistic regression


@dataclass
class LogReg:
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, l2: float = 1.0, max_iter: int = 50) -> LogReg:
        """Newton-Raphson on the penalised log-likelihood (intercept unpenalised)."""
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale < 1e-9] = 1.0
        Z = np.hstack([np.ones((X.shape[0], 1)), (X - mean) / scale])
        w = np.zeros(Z.shape[1])
        prior = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
        w[0] = math.log(prior / (1 - prior))
        penalty = np.full(Z.shape[1], l2)
        penalty[0] = 0.0
        for _ in range(max_iter):
            p = _sigmoid(Z @ w)
            grad = Z.T @ (p - y) + penalty * w
            hess = (Z * (p * (1 - p))[:, None]).T @ Z + np.diag(penalty + 1e-9)
            step = np.linalg.solve(hess, grad)
            w -= step
            if float(np.max(np.abs(step))) < 1e-7:
                break
        return cls(mean.tolist(), scale.tolist(), w[1:].tolist(), float(w[0]))

    def logits(self, X: np.ndarray) -> np.ndarray:
        out: np.ndarray = ((X - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.coef) + self.intercept
        return out

    def folded(self) -> tuple[list[float], float]:
        """Weights and bias on raw features (standardisation folded in), for pure-Python serving."""
        w = [c / s for c, s in zip(self.coef, self.scale)]
        b = self.intercept - sum(wi * m for wi, m in zip(w, self.mean))
        return w, b

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "scale": self.scale, "coef": self.coef, "intercept": self.intercept}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LogReg:
        model = cls(_finite_list(data["mean"], "logreg mean"), _finite_list(data["scale"], "logreg scale"),
                    _finite_list(data["coef"], "logreg coef"), _finite(data["intercept"], "logreg intercept"))
        if not len(model.mean) == len(model.scale) == len(model.coef):
            raise ValueError("logreg mean, scale and coef differ in length")
        if any(s == 0.0 for s in model.scale):
            raise ValueError("logreg scale has a zero")  # folded() divides by it
        return model


# --------------------------------------------------------------------------- boosted trees


class _Grower:
    """Grows one tree by exhaustive histogram splits; a child's histogram is parent minus sibling."""

    def __init__(self, flat: np.ndarray, cols: np.ndarray, edges: list[np.ndarray], g: np.ndarray, h: np.ndarray,
                 width: int, l2: float, min_leaf: int, lr: float) -> None:
        self.cols, self.edges = cols, edges
        self.g, self.h = g, h
        self.width, self.l2, self.min_leaf, self.lr = width, l2, min_leaf, lr
        self.k = cols.size
        # Bin ids of the sampled columns only (column i at i * width), so that a node's histogram is
        # one bincount of k * width cells, read as (k, width) without a gather.
        self.flat = flat - ((cols - np.arange(self.k)) * width)[None, :]
        usable = np.zeros((self.k, width), dtype=bool)
        for i, j in enumerate(cols):
            usable[i, : len(edges[j])] = True  # bin b is a split only if the feature has edge b
        self.usable = usable

    def hist(self, rows: np.ndarray) -> np.ndarray:
        idx = self.flat[rows].ravel()
        size = self.k * self.width
        out = np.empty((3, self.k, self.width))
        # each row's gradient once per column, in the order of idx (np.repeat): the same sums, in the
        # same order, as before
        out[0] = np.bincount(idx, weights=np.repeat(self.g[rows], self.k), minlength=size).reshape(self.k, self.width)
        out[1] = np.bincount(idx, weights=np.repeat(self.h[rows], self.k), minlength=size).reshape(self.k, self.width)
        out[2] = np.bincount(idx, minlength=size).reshape(self.k, self.width)
        return out

    def grow(self, tree: dict[str, list[float]], rows: np.ndarray, depth: int, hist: np.ndarray | None) -> int:
        node = len(tree["feature"])
        for key in ("feature", "threshold", "left", "right"):
            tree[key].append(-1.0)
        G, H = float(self.g[rows].sum()), float(self.h[rows].sum())
        tree["value"].append(-self.lr * G / (H + self.l2))
        if depth == 0 or rows.size < 2 * self.min_leaf:
            return node
        if hist is None:
            hist = self.hist(rows)
        GL, HL, CL = (hist[i].cumsum(axis=1) for i in range(3))
        GR, HR, CR = G - GL, H - HL, rows.size - CL
        l2 = self.l2
        gain = GL**2 / (HL + l2) + GR**2 / (HR + l2) - G**2 / (H + l2)
        valid = self.usable & (CL >= self.min_leaf) & (CR >= self.min_leaf)
        gain = np.where(valid, gain, -np.inf)
        best = int(np.argmax(gain))
        bi, bb = divmod(best, self.width)
        if not np.isfinite(gain[bi, bb]) or gain[bi, bb] <= 1e-9:
            return node
        j = int(self.cols[bi])
        go_left = (self.flat[rows, bi] - bi * self.width) <= bb
        left_rows, right_rows = rows[go_left], rows[~go_left]
        tree["feature"][node] = float(j)
        tree["threshold"][node] = float(self.edges[j][bb])
        left_hist = right_hist = None
        if depth > 1:
            if left_rows.size <= right_rows.size:
                left_hist = self.hist(left_rows)
                right_hist = hist - left_hist
            else:
                right_hist = self.hist(right_rows)
                left_hist = hist - right_hist
        tree["left"][node] = float(self.grow(tree, left_rows, depth - 1, left_hist))
        tree["right"][node] = float(self.grow(tree, right_rows, depth - 1, right_hist))
        return node


@dataclass
class Trees:
    """Flattened trees: node i of tree t is (feature, threshold, left, right, value); leaves have feature -1.

    A sample goes left when x[feature] <= threshold.
    """

    base: float
    trees: list[dict[str, list[float]]]

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, n_trees: int = 120, depth: int = 4, learning_rate: float = 0.05,
            l2: float = 2.0, min_leaf: int = 12, subsample: float = 0.8, colsample: float = 0.8,
            max_bins: int = 24, seed: int = 0) -> Trees:
        rng = np.random.default_rng(seed)
        n, d = X.shape
        width = max_bins + 1
        edges: list[np.ndarray] = []
        flat = np.zeros((n, d), dtype=np.int64)  # bin index offset by feature: one bincount per node
        for j in range(d):
            qs = np.unique(np.quantile(X[:, j], np.linspace(0, 1, max_bins + 1)[1:-1]))
            edges.append(qs)
            flat[:, j] = np.searchsorted(qs, X[:, j], side="left") + j * width  # bin b <=> x <= qs[b]
        splittable = np.array([len(e) > 0 for e in edges])
        prior = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
        base = math.log(prior / (1 - prior))
        raw = np.full(n, base)
        trees: list[dict[str, list[float]]] = []
        for _ in range(n_trees):
            p = _sigmoid(raw)
            g = p - y
            h = np.maximum(p * (1 - p), 1e-6)
            rows = np.flatnonzero(rng.random(n) < subsample) if subsample < 1 else np.arange(n)
            mask = (rng.random(d) < colsample) & splittable if colsample < 1 else splittable.copy()
            cols = np.flatnonzero(mask if mask.any() else splittable)
            tree: dict[str, list[float]] = {"feature": [], "threshold": [], "left": [], "right": [], "value": []}
            if cols.size:
                grower = _Grower(flat[:, cols], cols, edges, g, h, width, l2, min_leaf, learning_rate)
                grower.grow(tree, rows, depth, None)
            else:
                tree = {"feature": [-1.0], "threshold": [-1.0], "left": [-1.0], "right": [-1.0], "value": [0.0]}
            trees.append(tree)
            raw += cls._apply_tree(tree, X)
        return cls(base, trees)

    @staticmethod
    def _apply_tree(tree: Mapping[str, Sequence[float]], X: np.ndarray) -> np.ndarray:
        feature = np.asarray(tree["feature"], dtype=np.int64)
        threshold = np.asarray(tree["threshold"])
        left = np.asarray(tree["left"], dtype=np.int64)
        right = np.asarray(tree["right"], dtype=np.int64)
        value = np.asarray(tree["value"])
        node = np.zeros(X.shape[0], dtype=np.int64)
        for _ in range(64):
            f = feature[node]
            inner = f >= 0
            if not inner.any():
                break
            idx = np.flatnonzero(inner)
            x = X[idx, f[idx]]
            node[idx] = np.where(x <= threshold[node[idx]], left[node[idx]], right[node[idx]])
        return value[node]

    def logits(self, X: np.ndarray) -> np.ndarray:
        out = np.full(X.shape[0], self.base)
        for tree in self.trees:
            out += self._apply_tree(tree, X)
        return out

    def scorer(self) -> Callable[[Sequence[float]], float]:
        """The ensemble as one Python function of a feature list (the serve path).

        Each tree becomes a nested conditional expression over local variables (each feature the
        trees use is read from the list once) and float literals: a few tens of nanoseconds per
        tree, where walking the node arrays costs about ten times more. The generated source holds
        only integers and `repr`s of finite floats (exact round trips); anything else, or trees too
        deep to compile, falls back to the walk.
        """
        used: set[int] = set()

        def literal(value: float) -> str:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError("non-finite constant")
            return repr(value)

        def expr(tree: Mapping[str, Sequence[float]], node: int) -> str:
            feature = int(tree["feature"][node])
            if feature < 0:
                return literal(tree["value"][node])
            used.add(feature)
            left = expr(tree, int(tree["left"][node]))
            right = expr(tree, int(tree["right"][node]))
            return f"({left} if x{feature} <= {literal(tree['threshold'][node])} else {right})"

        try:
            terms = [expr(tree, 0) for tree in self.trees]
            reads = "".join(f"    x{j} = x[{j}]\n" for j in sorted(used))
            source = f"def score(x):\n{reads}    return {literal(self.base)}" + "".join(f" + {t}" for t in terms) + "\n"
            namespace: dict[str, Any] = {}
            exec(compile(source, "<heedls trees>", "exec"), namespace)  # noqa: S102 - generated above
            compiled: Callable[[Sequence[float]], float] = namespace["score"]
            return compiled
        except (RecursionError, SyntaxError, MemoryError, ValueError):
            return self._walk

    def _walk(self, x: Sequence[float]) -> float:
        z = self.base
        for tree in self.trees:
            feature, threshold, left, right = tree["feature"], tree["threshold"], tree["left"], tree["right"]
            node = 0
            while feature[node] >= 0:
                node = int(left[node] if x[int(feature[node])] <= threshold[node] else right[node])
            z += tree["value"][node]
        return z

    def to_json(self) -> dict[str, Any]:
        def compact(tree: dict[str, list[float]]) -> dict[str, list[Any]]:
            return {"feature": [int(v) for v in tree["feature"]], "threshold": list(tree["threshold"]),
                    "left": [int(v) for v in tree["left"]], "right": [int(v) for v in tree["right"]],
                    "value": [round(v, 8) for v in tree["value"]]}

        return {"base": self.base, "trees": [compact(t) for t in self.trees]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], n_features: int | None = None) -> Trees:
        """Trees as `to_json` writes them, checked (ValueError) so that scoring always ends: every
        tree is flattened parent first, so each inner node's children come after it and inside the
        tree, and at most MAX_TREE_DEPTH levels deep (`_apply_tree` walks no deeper); features in
        range when `n_features` is given; all numbers finite."""
        trees = [{k: _finite_list(t[k], f"tree {k}") for k in ("feature", "threshold", "left", "right", "value")}
                 for t in data["trees"]]
        for tree in trees:
            _check_tree(tree, n_features)
        return cls(_finite(data["base"], "trees base"), trees)


MAX_TREE_DEPTH = 64  # levels `_apply_tree` follows; Trees.fit grows 4


def _check_tree(tree: Mapping[str, Sequence[float]], n_features: int | None) -> None:
    feature, left, right = tree["feature"], tree["left"], tree["right"]
    n = len(feature)
    if n == 0 or not n == len(tree["threshold"]) == len(left) == len(right) == len(tree["value"]):
        raise ValueError("tree arrays are empty or differ in length")
    depth = [0] * n
    for node in range(n):
        f = feature[node]
        if f < 0:
            continue  # a leaf
        if f != int(f) or (n_features is not None and f >= n_features):
            raise ValueError(f"tree node {node} splits on feature {f!r}, outside the feature list")
        for child in (left[node], right[node]):
            if child != int(child) or not node < child < n:
                raise ValueError(f"tree node {node} has child {child!r}: not after it in the tree")
            depth[int(child)] = depth[node] + 1
            if depth[int(child)] > MAX_TREE_DEPTH:
                raise ValueError(f"tree deeper than {MAX_TREE_DEPTH} levels")


# Platt scaling maps the learner's logits to probabilities: slopes and offsets of a few units.
CALIBRATION_LIMIT = 100.0


def _within(value: Any, low: float, high: float, what: str) -> float:
    number = _finite(value, what)
    if not low <= number <= high:
        raise ValueError(f"{what} {number!r} is outside [{low:g}, {high:g}]")
    return number


def _finite(value: Any, what: str) -> float:
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{what} is not finite ({out!r})")
    return out


def _finite_list(values: Any, what: str) -> list[float]:
    out = [float(v) for v in values]
    if not all(map(math.isfinite, out)):
        raise ValueError(f"{what} has a value that is not finite")
    return out


# --------------------------------------------------------------------------- calibration


@dataclass
class Platt:
    a: float = 1.0
    b: float = 0.0

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> Platt:
        """p = sigmoid(a * raw + b), fitted by Newton on (out-of-fold) raw logits."""
        if y.size == 0 or y.min() == y.max():
            prior = float(np.clip(y.mean() if y.size else 0.5, 1e-3, 1 - 1e-3))
            return cls(0.0, math.log(prior / (1 - prior)))
        fitted = LogReg.fit(raw.reshape(-1, 1), y, l2=l2)
        w, b = fitted.folded()
        return cls(float(w[0]), float(b))

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return _sigmoid(self.a * raw + self.b)


# --------------------------------------------------------------------------- one stage


@dataclass
class StageModel:
    stage: str
    features: list[str]
    kind: Kind
    logreg: LogReg | None
    gbm: Trees | None
    calibration: Platt
    keep_accepted: float
    threshold: float
    # Calibrated out-of-fold scores of the training positives at quantile levels 0, 0.005, …, 1:
    # lets the gate derive the threshold for another "keep ≥ X %" target without refitting.
    positive_quantiles: list[float] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    _fast: tuple[list[float], float] | None = field(default=None, repr=False, compare=False)
    _trees: Callable[[Sequence[float]], float] | None = field(default=None, repr=False, compare=False)
    _order: tuple[str, ...] | None = field(default=None, repr=False, compare=False)

    # ---- scoring
    def raw(self, X: np.ndarray) -> np.ndarray:
        parts = []
        if self.logreg is not None:
            parts.append(self.logreg.logits(X))
        if self.gbm is not None:
            parts.append(self.gbm.logits(X))
        return np.mean(parts, axis=0) if parts else np.zeros(X.shape[0])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.calibration(self.raw(X))

    def score(self, row: Mapping[str, float]) -> float:
        """Calibrated acceptance probability of one feature dict, in pure Python (serve path)."""
        if self._order is None:
            self._order = tuple(self.features)
        # The extractor builds rows in the model's feature order: then values() is the vector.
        x = list(row.values()) if tuple(row) == self._order else list(map(row.get, self.features, repeat(0.0)))
        parts = 0
        total = 0.0
        if self.logreg is not None:
            if self._fast is None:
                self._fast = self.logreg.folded()
            w, b = self._fast
            total += b + sum(map(operator.mul, w, x))
            parts += 1
        if self.gbm is not None:
            if self._trees is None:
                self._trees = self.gbm.scorer()
            total += self._trees(x)
            parts += 1
        raw = total / parts if parts else 0.0
        return _psig(self.calibration.a * raw + self.calibration.b)

    def threshold_for(self, keep: float) -> float:
        """The threshold for another keep target, from the stored quantiles of the positives' scores
        by the same rule as `threshold_for_keep` when the model knows how many there were."""
        if abs(keep - self.keep_accepted) < 1e-9 or not self.positive_quantiles:
            return self.threshold
        qs = self.positive_quantiles
        n = int(self.meta.get("calibration_positives") or 0)
        if n > 0:  # the floor((1 - keep)(n + 1))-th lowest, as a quantile level of the n scores
            k = math.floor(min(max(1.0 - keep, 0.0), 1.0) * (n + 1) + 1e-9)
            if k == 0:
                return 0.0
            level = min((k - 1) / max(n - 1, 1), 1.0)
        else:  # a model file from before 2026-11-29
            level = min(max(1.0 - keep, 0.0), 1.0)
        return float(qs[math.floor(level * (len(qs) - 1))])

    # ---- persistence
    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage, "features": self.features, "kind": self.kind,
            "logreg": self.logreg.to_json() if self.logreg else None,
            "gbm": self.gbm.to_json() if self.gbm else None,
            "calibration": {"a": self.calibration.a, "b": self.calibration.b},
            "keep_accepted": self.keep_accepted, "threshold": self.threshold,
            "positive_quantiles": [round(v, 6) for v in self.positive_quantiles], "meta": self.meta,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StageModel:
        kind = str(data["kind"])
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r}")
        features = [str(n) for n in data["features"]]
        logreg = LogReg.from_json(data["logreg"]) if data.get("logreg") else None
        gbm = Trees.from_json(data["gbm"], len(features)) if data.get("gbm") else None
        if logreg is not None and len(logreg.coef) != len(features):
            raise ValueError("logreg weights do not match the feature list")
        cal = data.get("calibration") or {}
        meta = dict(data.get("meta") or {})
        positives = meta.get("calibration_positives")
        if positives is not None and (isinstance(positives, bool) or not isinstance(positives, (int, float))
                                      or not math.isfinite(positives)):
            raise ValueError("meta calibration_positives is not a number")  # threshold_for reads it
        # Every number is finite: a NaN weight or threshold would hide every suggestion (NaN >= t
        # is False), and nothing at serve time could tell.
        # And within what they can be: a probability threshold of 2.0 or a calibration slope of
        # 1e308 (a hand-edited file) skipped every request without a word.
        quantiles = _finite_list(data.get("positive_quantiles") or [], "positive_quantiles")
        if any(not 0.0 <= q <= 1.0 for q in quantiles):
            raise ValueError("positive_quantiles are not all probabilities (0 to 1)")
        return cls(str(data["stage"]), features, kind, logreg, gbm,
                   Platt(_within(cal.get("a", 1.0), -CALIBRATION_LIMIT, CALIBRATION_LIMIT, "calibration a"),
                         _within(cal.get("b", 0.0), -CALIBRATION_LIMIT, CALIBRATION_LIMIT, "calibration b")),
                   _within(data["keep_accepted"], 0.0, 1.0, "keep_accepted"), _within(data["threshold"], 0.0, 1.0, "threshold"),
                   quantiles, meta)

    def finite(self) -> bool:
        """Whether every number the stage scores with is finite (what `from_json` requires)."""
        try:
            StageModel.from_json(json.loads(json.dumps(self.to_json())))
        except ValueError:
            return False
        return True


def _inner_folds(groups: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """Fold ids for out-of-fold scores: by session when there are enough sessions, else random."""
    uniq = sorted(set(groups.tolist()))
    n = groups.size
    if len(uniq) >= 3:
        k = min(k, len(uniq))
        fold_of = {g: i % k for i, g in enumerate(uniq)}
        ids = np.array([fold_of[g] for g in groups.tolist()])
    else:
        rng = np.random.default_rng(seed)
        ids = rng.permutation(n) % min(k, max(2, n))
    return [np.flatnonzero(ids == f) for f in range(int(ids.max()) + 1)] if n else []


def _fit_raw(X: np.ndarray, y: np.ndarray, kind: Kind, seed: int, params: Mapping[str, Any]) -> tuple[LogReg | None, Trees | None]:
    logreg = LogReg.fit(X, y, l2=float(params.get("l2", DEFAULT_L2))) if kind in ("logreg", "blend") else None
    gbm = None
    if kind in ("gbm", "blend"):
        gbm = Trees.fit(X, y, seed=seed, **{k: v for k, v in params.items() if k in (
            "n_trees", "depth", "learning_rate", "min_leaf", "subsample", "colsample", "max_bins")})
    return logreg, gbm


def blas_single_thread() -> contextlib.AbstractContextManager[object]:
    """Small matrices: multi-threaded BLAS only adds contention (24x slower on a loaded 2-core box)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - declared dependency; stay usable without it
        return contextlib.nullcontext()
    limiter: contextlib.AbstractContextManager[object] = threadpool_limits(limits=1, user_api="blas")
    return limiter


def fit_stage(stage: str, features: Sequence[str], X: np.ndarray, y: np.ndarray, groups: np.ndarray,
              kind: Kind = "blend", keep_accepted: float = 0.95, seed: int = 0, inner_folds: int = 10,
              params: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None,
              prior: PriorRows | None = None) -> StageModel:
    """Fit one stage on training data only.

    Calibration and threshold come from out-of-fold scores *within* these training data (grouped by
    session), never from in-sample scores, which would be over-confident for the trees. `prior`
    rows from other data (`prior.py`, in `features` order) join every fit, the out-of-fold ones
    included. Those that calibrate (`PriorRows.calibrates`: other people's decisions, for a target
    of people) also join calibration and the threshold as sessions of their own; the rest
    (replayed rows) are never scored for them.
    """
    with blas_single_thread():
        return _fit_stage(stage, features, X, y, groups, kind, keep_accepted, seed, inner_folds, params, meta,
                          prior)


def _constant_stage(stage: str, features: Sequence[str], y: np.ndarray, keep_accepted: float,
                    meta: dict[str, Any]) -> StageModel:
    """A constant model at the observed rate, threshold 0: it shows everything."""
    rate = float(np.clip(y.mean() if y.size else 0.5, 1e-3, 1 - 1e-3))
    return StageModel(stage, list(features), "logreg", None, None, Platt(0.0, math.log(rate / (1 - rate))),
                      keep_accepted, 0.0, [], {**meta, "degenerate": True})


def _with_prior(X: np.ndarray, y: np.ndarray,
                prior: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    if prior is None or prior[1].size == 0:
        return X, y
    return np.vstack([X, prior[0]]), np.concatenate([y, prior[1].astype(float)])


def _fit_stage(stage: str, features: Sequence[str], X: np.ndarray, y: np.ndarray, groups: np.ndarray, kind: Kind,
               keep_accepted: float, seed: int, inner_folds: int, params: Mapping[str, Any] | None,
               meta: Mapping[str, Any] | None, prior_rows: PriorRows | None = None) -> StageModel:
    params = dict(params or {})
    y = y.astype(float)
    meta_out = {"n": int(y.size), "positives": int(y.sum()), **(meta or {})}
    prior = None if prior_rows is None else (prior_rows.X, prior_rows.y)  # every row trains (narrowed below)
    if prior is not None and prior[1].size:
        meta_out["prior_rows"] = int(prior[1].size)
    if y.size == 0 or y.min() == y.max():  # one class only
        return _constant_stage(stage, features, y, keep_accepted, meta_out)
    if prior_rows is not None:
        joins = prior_rows.calibrates
        if joins.any():  # other people's rows calibrate as sessions of their own; the rest only train
            X = np.vstack([X, prior_rows.X[joins]])
            y = np.concatenate([y, prior_rows.y[joins].astype(float)])
            # as text: target sessions may be numbers, and fold ids are sorted together
            groups = np.concatenate([np.array([str(g) for g in groups], dtype=object), prior_rows.groups[joins]])
            prior = (prior_rows.X[~joins], prior_rows.y[~joins])
            meta_out["calibration_rows"] = int(y.size)
    oof = np.zeros(y.size)
    for fold in _inner_folds(groups, inner_folds, seed):
        train = np.setdiff1d(np.arange(y.size), fold)
        if train.size == 0 or y[train].min() == y[train].max():
            oof[fold] = 0.0
            continue
        lr_m, gb_m = _fit_raw(*_with_prior(X[train], y[train], prior), kind, seed, params)
        probe = StageModel(stage, list(features), kind, lr_m, gb_m, Platt(), keep_accepted, 0.0)
        oof[fold] = probe.raw(X[fold])
    calibration = Platt.fit(oof, y)
    if calibration.a <= 0.0:
        # Out-of-fold scores that do not rank the decisions, or rank them backwards: a threshold on
        # them decides at random, and a flat or inverted calibration puts all of a later request's
        # scores on one side of it (a user's live refit skipped 571 of its next 572 requests). Such
        # a stage is the one-class case: the observed rate, showing everything.
        return _constant_stage(stage, features, y, keep_accepted, {**meta_out, "reason": "does not rank"})
    calibrated = calibration(oof)
    pos = calibrated[y == 1]
    meta_out["calibration_positives"] = int(pos.size)
    logreg, gbm = _fit_raw(*_with_prior(X, y, prior), kind, seed, params)
    return StageModel(stage, list(features), kind, logreg, gbm, calibration, keep_accepted,
                      threshold_for_keep(pos, keep_accepted), positive_quantiles(pos), meta_out)


# --------------------------------------------------------------------------- both stages, on disk


@dataclass
class AcceptanceModel:
    version: str
    stages: dict[str, StageModel]
    label: str = "accepted"
    meta: dict[str, Any] = field(default_factory=dict)

    def stage_for(self, stage: str, provider: str | None) -> StageModel | None:
        """The stage model for suggestions from `provider`: `"{stage}@{provider}"` when the file has
        one (e.g. `context@local`, learned from a replay of that provider), else `stage`."""
        if provider:
            specific = self.stages.get(f"{stage}@{provider}")
            if specific is not None:
                return specific
        return self.stages.get(stage)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": self.version, "label": self.label, "meta": self.meta,
                "stages": {name: model.to_json() for name, model in self.stages.items()}}

    def save(self, path: Path | str) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(path) as tmp:  # a crash never leaves half a model file
            tmp.write_text(json.dumps(self.to_json(), separators=(",", ":")) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AcceptanceModel:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} model file")
        version = data.get("version")
        if not isinstance(version, str) or not version:
            raise ValueError("model file has no version")
        stages = {str(k): StageModel.from_json(v) for k, v in (data.get("stages") or {}).items()}
        return cls(version, stages, str(data.get("label") or "accepted"), dict(data.get("meta") or {}))

    @classmethod
    def load(cls, path: Path | str) -> AcceptanceModel:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
