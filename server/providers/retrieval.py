"""Line retrieval: whole lines seen elsewhere in the workspace (and earlier in the current file).

Two lookups, both over lines with their indentation stripped:
- *same prefix*: lines that start with what has been typed on the current line (an import line seen
  elsewhere, a repeated call pattern); the most frequent completion wins;
- *next line*: at the start of a line, the lines that followed the same previous line (or the same
  two previous lines) elsewhere, i.e. the line that follows the most similar previous line.

Counts are kept per file so a file can be excluded at query time (the current file's stale disk copy
in the server, the held-out file in the benchmark). The confidence is a smoothed frequency: the share
of matching occurrences that continue with the winner, shrunk towards zero when there are few.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass

_MAX_SCAN = 3000  # prefix ranges larger than this are too ambiguous to be worth counting


@dataclass(frozen=True)
class LineHit:
    line: str  # the full stripped line proposed
    confidence: float
    support: int  # occurrences agreeing with it
    total: int  # occurrences of the key
    kind: str  # "prefix" | "next" | "next2"


def _clean(lines: list[str]) -> list[str]:
    return [ln.strip() for ln in lines if ln.strip()]


class LineIndex:
    """Stripped lines of many files, searchable by prefix and by the preceding line(s)."""

    def __init__(self, files: list[tuple[int, list[str]]]) -> None:
        entries: list[tuple[str, int]] = []
        self.after1: dict[str, list[tuple[str, int]]] = {}
        self.after2: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for fid, raw in files:
            lines = _clean(raw)
            entries.extend((ln, fid) for ln in lines)
            for i in range(1, len(lines)):
                self.after1.setdefault(lines[i - 1], []).append((lines[i], fid))
                if i >= 2:
                    self.after2.setdefault((lines[i - 2], lines[i - 1]), []).append((lines[i], fid))
        entries.sort()
        self.lines = [e[0] for e in entries]
        self.fids = [e[1] for e in entries]

    def prefix_counts(self, prefix: str, exclude: int | None) -> Counter[str] | None:
        lo = bisect.bisect_left(self.lines, prefix)
        hi = bisect.bisect_right(self.lines, prefix + "\U0010ffff")
        if hi - lo > _MAX_SCAN:
            return None
        out: Counter[str] = Counter()
        for i in range(lo, hi):
            if self.fids[i] != exclude:
                out[self.lines[i]] += 1
        return out

    def next_counts(self, prev: tuple[str, ...], exclude: int | None) -> Counter[str]:
        if len(prev) == 2:
            found = self.after2.get((prev[0], prev[1]), [])
        else:
            found = self.after1.get(prev[0], [])
        return Counter(line for line, fid in found if fid != exclude)


def _best(counts: Counter[str], line_prefix: str, kind: str, prior: float) -> LineHit | None:
    total = sum(counts.values())
    if total == 0:
        return None
    # Lines equal to the prefix mean "the line ends here": they count against every completion.
    options = [(c, line) for line, c in counts.items() if line.startswith(line_prefix) and line != line_prefix]
    if not options:
        return None
    support, line = max(options)
    conf = support / (total + prior)
    return LineHit(line=line, confidence=conf, support=int(support), total=int(total), kind=kind)


def lookup(
    index: LineIndex | None,
    cache_lines: list[str],
    line_prefix: str,
    prev_lines: list[str],
    exclude: int | None,
    cache_boost: float = 3.0,
    min_prefix: int = 3,
) -> list[LineHit]:
    """Candidate whole lines for the cursor's line, best first.

    `cache_lines` are the current file's complete lines before the cursor (the cache component).
    """
    hits: list[LineHit] = []
    local = _clean(cache_lines)
    stripped = line_prefix.lstrip()
    if len(stripped) >= min_prefix:
        counts: Counter[str] = Counter()
        if index is not None:
            found = index.prefix_counts(stripped, exclude)
            if found:
                counts.update(found)
        for ln in local:
            if ln.startswith(stripped):
                counts[ln] += cache_boost  # type: ignore[assignment]
        hit = _best(counts, stripped, "prefix", prior=1.0)
        if hit:
            hits.append(hit)
    for depth, kind in ((2, "next2"), (1, "next")):
        if len(prev_lines) < depth:
            continue
        key = tuple(prev_lines[-depth:])
        counts = index.next_counts(key, exclude) if index is not None else Counter()
        last = key[-1]
        for i in range(depth, len(local)):
            if local[i - 1] == last and (depth == 1 or local[i - 2] == key[0]):
                counts[local[i]] += cache_boost  # type: ignore[assignment]
        hit = _best(counts, stripped, kind, prior=1.0)
        if hit:
            hits.append(hit)
    hits.sort(key=lambda h: -h.confidence)
    return hits
