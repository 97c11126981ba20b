"""Token n-gram model with a cache component (after Hellendoorn & Devanbu, FSE 2017).

Two count sources are interpolated:
- the *global* model: every token of the workspace, held in a suffix array over the reversed token
  stream. Counting the successors of a context of any length is then a few binary searches inside a
  shrinking range (no per-n-gram dictionaries, so memory is ~20 bytes per token and a file can be
  left out of the counts at query time: that is how the current file's stale disk copy, or the
  benchmark's held-out file, is excluded);
- the *cache* model: the tokens of the current file before the cursor, matched by brute force with
  numpy (a few thousand tokens), whose counts are boosted so local repetition dominates when present.

Probabilities use Witten-Bell interpolation from the unigram up to the longest matched context.
Generation is a small beam search that stops at the end of the line; the product of the token
probabilities (including the end-of-line token) is the model's probability that the rest of the line
is exactly this text, which is what `confidence` starts from.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from heedls.server.providers.code_tokens import BOF, EOL, SPECIAL

IntArray = npt.NDArray[np.int32]  # int32 halves the index's memory (n < 2**31 tokens)

BEAM_PRUNE = math.log(50.0)  # beams 50x less likely than the best are dropped
MAX_ORDER = 10  # longest context (tokens) used for counting
_SORT_DEPTH = 16  # suffixes are sorted by their first 16 tokens: contexts up to that length work
_SAMPLE = 2048  # above this many occurrences, successors are estimated from a stride sample
# In a multi-root workspace, an occurrence in the requesting file's own folder counts this many
# times: ties and near-ties go to that folder's code, a clear majority elsewhere still wins.
OWN_GROUP_WEIGHT = 2.5


class Vocab:
    """Token string <-> integer id; shared by the global and the cache model."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.strings: list[str] = []
        self._sorted: list[str] | None = None
        for tok in (BOF, EOL):
            self.id(tok)

    def id(self, tok: str) -> int:
        found = self.ids.get(tok)
        if found is None:
            found = len(self.strings)
            self.ids[tok] = found
            self.strings.append(tok)
        return found

    def get(self, tok: str) -> int:
        return self.ids.get(tok, -1)

    def __len__(self) -> int:
        return len(self.strings)

    def freeze(self) -> None:
        """Sort the spellings known so far for prefix search. Tokens added later (the current
        file's new names) are not in it: re-sorting on every request would cost milliseconds."""
        self._sorted = sorted(self.strings)

    def with_prefix(self, prefix: str, limit: int = 4000) -> list[int]:
        """Ids of (frozen) tokens starting with `prefix` (for the constrained first token)."""
        import bisect

        if self._sorted is None:
            self.freeze()
        assert self._sorted is not None
        lo = bisect.bisect_left(self._sorted, prefix)
        out: list[int] = []
        for s in self._sorted[lo:]:
            if not s.startswith(prefix) or len(out) >= limit:
                break
            out.append(self.ids[s])
        return out


@dataclass
class Counts:
    """Successor counts of one context: total, distinct, and per-token counts."""

    total: float
    distinct: int
    counts: dict[int, float]


class GlobalModel:
    """Suffix array over the reversed token stream of a set of files."""

    def __init__(self, vocab: Vocab, files: list[tuple[str, list[str]]], groups: list[int] | None = None) -> None:
        """`groups`: per file, its group (the workspace folder it belongs to), for `counts(prefer=)`."""
        self.vocab = vocab
        self.spans: dict[str, tuple[int, int]] = {}
        ids: list[int] = []
        starts: list[int] = []
        for key, toks in files:
            start = len(ids)
            starts.append(start)
            ids.extend(vocab.id(t) for t in toks)
            self.spans[key] = (start, len(ids))
        corpus = np.asarray(ids, dtype=np.int32)
        self.n = n = len(corpus)
        rev = corpus[::-1].copy()
        sa = _suffix_array(rev, _SORT_DEPTH)
        self.first = rev[sa] if n else np.zeros(0, np.int32)
        self.rev = rev
        self.sa = sa
        # Second and third context tokens of each suffix, precomputed because the ranges of one-
        # and two-token contexts are the large ones (".", "(", "self" …).
        self.cols = [self.first]
        for d in (1, 2):
            pos = sa + d
            col = np.where(pos < n, rev[np.minimum(pos, max(n - 1, 0))], -1).astype(np.int32) if n else self.first
            self.cols.append(col)
        # Successor (next token in reading order) and position (of the context's last token).
        self.succ = np.where(sa >= 1, rev[np.maximum(sa - 1, 0)], -1).astype(np.int32) if n else np.zeros(0, np.int32)
        self.orig = (n - 1 - sa).astype(np.int32) if n else np.zeros(0, np.int32)
        # The group (workspace folder) of each suffix's context, in suffix-array order: only with two
        # groups or more (2 bytes a token then); a single folder's index pays nothing for it.
        self.group: npt.NDArray[np.int16] | None = None
        if groups is not None and len(groups) == len(files) and len(set(groups)) > 1 and n:
            per_file = np.asarray(groups, dtype=np.int16)
            file_of = np.asarray(starts, dtype=np.int64).searchsorted(self.orig, side="right") - 1
            self.group = per_file[file_of]
        size = max(len(vocab), 1)
        self.unigram = np.bincount(corpus, minlength=size).astype(np.float64) if n else np.zeros(size)
        vocab.freeze()

    def ranges(self, ctx_rev: list[int]) -> list[tuple[int, int]]:
        """SA ranges of the contexts ctx[-1:], ctx[-2:], … (ctx_rev is the context reversed)."""
        out: list[tuple[int, int]] = []
        if self.n == 0 or not ctx_rev:
            return out
        tok = ctx_rev[0]
        lo, hi = _bounds(self.first, tok)
        for depth in range(min(len(ctx_rev), MAX_ORDER, _SORT_DEPTH)):
            if depth:
                tok = ctx_rev[depth]
                if tok < 0:
                    break
                if depth < len(self.cols):
                    col = self.cols[depth][lo:hi]
                else:
                    pos = self.sa[lo:hi] + depth
                    col = np.where(pos < self.n, self.rev[np.minimum(pos, self.n - 1)], -1)
                # Within the range suffixes are sorted by their next token: binary search it.
                a, b = _bounds(col, tok)
                lo, hi = lo + a, lo + b
            if hi <= lo:
                break
            out.append((lo, hi))
        return out

    def counts(self, lo: int, hi: int, exclude: tuple[int, int] | None, prefer: int | None = None) -> Counts | None:
        """Successor counts of the SA range; with `prefer` (a group given at construction), each
        occurrence in a file of that group counts OWN_GROUP_WEIGHT times."""
        step = max(1, (hi - lo) // _SAMPLE)
        succ = self.succ[lo:hi:step]
        # Weighted only where counted exactly: a context seen more than _SAMPLE times (one or two
        # common tokens) is no near-tie between folders, and weighting it is where the time would go.
        group = self.group[lo:hi] if prefer is not None and self.group is not None and step == 1 else None
        if exclude is not None:
            orig = self.orig[lo:hi:step]
            keep = (orig < exclude[0]) | (orig >= exclude[1])
            succ = succ[keep]
            group = group[keep] if group is not None else None
        valid = succ >= 0
        succ = succ[valid]
        if len(succ) == 0:
            return None
        if group is not None:
            own = group[valid] == prefer
            if own.any():  # the own folder's occurrences once more, (OWN_GROUP_WEIGHT - 1) each
                counted = _count(succ, float(step))
                extra = _count(succ[own], (OWN_GROUP_WEIGHT - 1.0) * step)
                for tok, count in extra.counts.items():
                    counted.counts[tok] += count
                counted.total += extra.total
                return counted
        return _count(succ, float(step))


def _bounds(col: npt.NDArray[np.int32], tok: int) -> tuple[int, int]:
    """[first, last+1) of `tok` in the sorted `col`. The keys are made int32 like the column: a
    Python int would make numpy cast the whole column to int64 first, on every call."""
    found = np.searchsorted(col, np.array([tok, tok + 1], dtype=col.dtype))
    return int(found[0]), int(found[1])


def _count(values: IntArray, scale: float) -> Counts:
    """Counts of token ids; small arrays (the common, long-context case) skip numpy's sort."""
    if len(values) <= 96:
        counts: dict[int, float] = {}
        for v in values.tolist():
            counts[v] = counts.get(v, 0.0) + scale
    else:
        uniq, cnt = np.unique(values, return_counts=True)
        counts = {u: c * scale for u, c in zip(uniq.tolist(), cnt.tolist())}
    return Counts(total=float(len(values)) * scale, distinct=len(counts), counts=counts)


def _suffix_array(arr: IntArray, depth: int) -> IntArray:
    """Suffix positions sorted by their first `depth` tokens (prefix doubling with numpy)."""
    n = len(arr)
    if n == 0:
        return np.zeros(0, np.int32)
    rank = arr.astype(np.int64)
    k = 1
    order = np.argsort(rank, kind="stable")
    while k < depth:
        nxt = np.full(n, -1, np.int64)
        nxt[: n - k] = rank[k:]
        order = np.lexsort((nxt, rank))
        r_sorted = rank[order]
        n_sorted = nxt[order]
        change = np.empty(n, bool)
        change[0] = True
        change[1:] = (r_sorted[1:] != r_sorted[:-1]) | (n_sorted[1:] != n_sorted[:-1])
        new_rank = np.empty(n, np.int64)
        new_rank[order] = np.cumsum(change) - 1
        rank = new_rank
        if change.all():
            break
        k *= 2
    return order.astype(np.int32)


class CacheModel:
    """The current file's tokens before the cursor, counted by brute-force matching."""

    def __init__(self, ids: list[int]) -> None:
        self.arr = np.asarray(ids, dtype=np.int32)
        self.steps: dict[tuple[int, ...], Step] = {}
        # What the memoised steps were counted for: (the excluded span, the preferred group).
        self.steps_exclude: tuple[tuple[int, int] | None, int | None] | None = None

    def all_counts(self, ctx: list[int], levels: int = 99) -> list[Counts | None]:
        """Counts for contexts of length 1..len(ctx) (ctx in reading order); only the longest
        `levels` are counted (shorter ones are None): they are the ones that matter."""
        out: list[Counts | None] = []
        depths: list[npt.NDArray[np.intp]] = []
        arr = self.arr
        n = len(arr)
        if n < 2 or not ctx:
            return out
        # Candidate positions p: arr[p] is the successor, arr[p-1] the last context token.
        pos = np.nonzero(arr[:-1] == ctx[-1])[0] + 1
        for depth in range(1, min(len(ctx), MAX_ORDER) + 1):
            if depth > 1:
                back = pos - depth
                pos = pos[back >= 0]
                pos = pos[arr[pos - depth] == ctx[-depth]]
            if len(pos) == 0:
                break
            depths.append(pos)
        for i, found in enumerate(depths):
            if i < len(depths) - levels:
                out.append(None)
                continue
            out.append(_count(arr[found], 1.0))
        return out


@dataclass
class Step:
    """The interpolated distribution at one context, lazily evaluated per token."""

    levels: list[Counts]  # merged global+cache counts, shortest context first
    unigram: npt.NDArray[np.float64]  # workspace counts without the excluded file
    uni_total: float
    vocab_size: int

    def prob(self, tok: int) -> float:
        base = self.unigram[tok] if 0 <= tok < len(self.unigram) else 0.0
        p = (base + 0.5) / (self.uni_total + 0.5 * self.vocab_size)
        for level in self.levels:
            d = level.distinct
            p = (level.counts.get(tok, 0.0) + d * p) / (level.total + d)
        return p

    def candidates(self, limit: int = 12) -> list[int]:
        """Likely next tokens: successors of the longest contexts, most frequent first."""
        seen: dict[int, float] = {}
        for level in reversed(self.levels[-2:]):
            items = level.counts.items()
            top = heapq.nlargest(limit, items, key=lambda kv: kv[1]) if len(items) > limit else items
            for tok, c in sorted(top, key=lambda kv: -kv[1]):
                seen.setdefault(tok, c)
            if len(seen) >= limit:
                break
        return list(seen)


@dataclass
class Generation:
    tokens: list[str]
    prob: float  # probability of the whole sequence, EOL included when `complete`
    complete: bool  # ended with EOL (the rest of the line is fully predicted)
    min_prob: float
    order: int  # longest context matched at the first step
    meta: dict[str, float] = field(default_factory=dict)


class NgramModel:
    """Interpolation of a global model and a cache model, and line generation from them."""

    def __init__(
        self, vocab: Vocab, global_model: GlobalModel | None, cache_boost: float = 4.0, levels: int = 4
    ) -> None:
        self.vocab = vocab
        self.levels = levels
        self._uni_memo: tuple[tuple[int, int], npt.NDArray[np.float64], float] | None = None
        self.glob = global_model
        self.cache_boost = cache_boost

    def _unigram(self, exclude: tuple[int, int] | None) -> tuple[npt.NDArray[np.float64], float]:
        """Unigram counts of the workspace minus the excluded span (memoised for the last span)."""
        if self.glob is None or self.glob.n == 0:
            return np.zeros(max(len(self.vocab), 1)), 0.0
        if exclude is None:
            return self.glob.unigram, float(self.glob.n)
        if self._uni_memo is not None and self._uni_memo[0] == exclude:
            return self._uni_memo[1], self._uni_memo[2]
        g = self.glob
        held = np.bincount(g.rev[g.n - exclude[1] : g.n - exclude[0]], minlength=len(g.unigram))
        uni = g.unigram - held[: len(g.unigram)]
        self._uni_memo = (exclude, uni, float(uni.sum()))
        return uni, float(uni.sum())

    def step(
        self,
        ctx: list[int],
        cache: CacheModel | None,
        exclude: tuple[int, int] | None,
        memo: dict[tuple[int, ...], Step],
        prefer: int | None = None,
    ) -> Step:
        key = tuple(ctx[-MAX_ORDER:])
        hit = memo.get(key)
        if hit is not None:
            return hit
        ctx = list(key)
        glevels: list[Counts | None] = []
        if self.glob is not None:
            ranges = self.glob.ranges(ctx[::-1])
            glevels = [None] * len(ranges)
            found = 0
            # Only the longest contexts with data are counted: below them the interpolation weight
            # is small and counting the huge short-context ranges would dominate the latency.
            for i in range(len(ranges) - 1, -1, -1):
                if found >= self.levels:
                    break
                counted = self.glob.counts(ranges[i][0], ranges[i][1], exclude, prefer)
                glevels[i] = counted
                found += counted is not None
        clevels = cache.all_counts(ctx, self.levels) if cache is not None else []
        levels: list[Counts] = []
        for i in range(max(len(glevels), len(clevels))):
            g = glevels[i] if i < len(glevels) else None
            c = clevels[i] if i < len(clevels) else None
            if g is None and c is None:
                continue
            merged: dict[int, float] = dict(g.counts) if g else {}
            if c is not None:
                for tok, cnt in c.counts.items():
                    merged[tok] = merged.get(tok, 0.0) + self.cache_boost * cnt
            total = (g.total if g else 0.0) + (self.cache_boost * c.total if c else 0.0)
            levels.append(Counts(total=total, distinct=len(merged), counts=merged))
        uni, total = self._unigram(exclude)
        step = Step(levels=levels, unigram=uni, uni_total=total, vocab_size=len(self.vocab))
        memo[key] = step
        return step

    def generate(
        self,
        context: list[str],
        pending: str,
        cache: CacheModel | None,
        exclude: tuple[int, int] | None = None,
        beam: int = 3,
        max_tokens: int = 24,
        first_tokens: list[str] | None = None,
        until: float | None = None,
        prefer: int | None = None,
    ) -> list[Generation]:
        """Most probable continuations up to the end of the line, best first. `prefer`: the group
        (workspace folder) of the requesting file, whose code counts more (GlobalModel.counts)."""
        vocab = self.vocab
        ctx = [vocab.get(t) for t in context]
        # Steps depend on the context, the cache and the exclusion only: keep them on the cache
        # model (one per document version), so the keystrokes typed on one line reuse them.
        memo: dict[tuple[int, ...], Step] = cache.steps if cache is not None else {}
        if len(memo) > 4096 or (cache is not None and cache.steps_exclude != (exclude, prefer)):
            memo.clear()
            if cache is not None:
                cache.steps_exclude = (exclude, prefer)
        first = self.step(ctx, cache, exclude, memo, prefer)
        order = len(first.levels)
        # First token: constrained to extend what is being typed.
        cand = [t for t in first.candidates(limit=40) if vocab.strings[t].startswith(pending)]
        if pending:
            # Spellings seen in the workspace (minus the excluded file) or earlier in this file.
            extra = vocab.with_prefix(pending, limit=2000)
            if extra:
                uni = first.unigram
                local = set(cache.arr.tolist()) if cache is not None else set()
                extra.extend(t for t in local if t >= len(uni) and vocab.strings[t].startswith(pending))
                weight = {t: (uni[t] if t < len(uni) else 0.0) + (5.0 if t in local else 0.0) for t in extra}
                extra = [t for t in extra if weight[t] > 0]
                extra.sort(key=lambda t: -weight[t])
                cand.extend(t for t in extra[:30] if t not in cand)
        if first_tokens:
            cand.extend(vocab.id(t) for t in first_tokens if vocab.id(t) not in cand)
        cand = [t for t in cand if vocab.strings[t] != BOF]
        if not cand:
            return []
        scored = [(first.prob(t), t) for t in cand]
        if pending:
            z = sum(p for p, _ in scored)
            scored = [(p / z, t) for p, t in scored]
        scored.sort(reverse=True)
        beams: list[tuple[float, float, list[int]]] = [(math.log(p), p, [t]) for p, t in scored[:beam]]
        finished: list[tuple[float, float, list[int]]] = []
        for _ in range(max_tokens):
            if until is not None and time.perf_counter() > until:
                break  # out of time: unfinished beams are returned as incomplete
            grown: list[tuple[float, float, list[int]]] = []
            for lp, mn, seq in beams:
                if vocab.strings[seq[-1]] in SPECIAL:
                    finished.append((lp, mn, seq))
                    continue
                st = self.step(ctx + seq, cache, exclude, memo, prefer)
                options = st.candidates(limit=beam + 2) or [vocab.get(EOL)]
                for tok in options[: beam + 2]:
                    p = st.prob(tok)
                    grown.append((lp + math.log(p), min(mn, p), seq + [tok]))
            grown.sort(key=lambda b: -b[0])
            # Beams far less likely than the best one (or than a line already finished) can't end
            # up ranked high enough to be shown: drop them instead of extending them.
            best = max([b[0] for b in grown[:1]] + [f[0] for f in finished], default=0.0)
            beams = [b for b in grown[:beam] if b[0] >= best - BEAM_PRUNE]
            if not beams:
                break
        finished.extend(b for b in beams if vocab.strings[b[2][-1]] not in SPECIAL)
        finished.sort(key=lambda b: -b[0])
        out: list[Generation] = []
        for lp, mn, seq in finished[:beam]:
            strs = [vocab.strings[t] for t in seq]
            complete = bool(strs) and strs[-1] in SPECIAL
            out.append(
                Generation(tokens=strs, prob=math.exp(lp), complete=complete, min_prob=mn, order=order)
            )
        return out
