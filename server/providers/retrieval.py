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
from array import array
from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_MAX_SCAN = 3000  # prefix ranges larger than this are too ambiguous to be worth counting
# In a multi-root workspace, a line in the requesting file's own folder counts this many times (as
# in the n-gram model): ties and near-ties go to that folder's code, a clear majority elsewhere wins.
OWN_GROUP_WEIGHT = 2.5


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
    """Stripped lines of many files, searchable by prefix and by the preceding line(s).

    Kept as a few flat arrays: each distinct line once (`texts`), every line of every file as the id
    of its text and its file id, and for the next-line lookups the positions that follow each
    previous line (pair of lines) sorted by that key. Not a dict of lists of (line, file) tuples:
    the workspace index is rebuilt every two minutes while the user types, on a thread, next to the
    one in use, and the tuples (a 332-file workspace: 735,000 allocations, 49 MB; now 131,000 and
    15 MB) stayed behind in the allocator's arenas after each rebuild: the server's RSS grew in
    steps of 30-100 MB every two minutes of typing."""

    def __init__(self, files: list[tuple[int, list[str]]], groups: dict[int, int] | None = None) -> None:
        """`groups`: file id -> its group (the workspace folder it belongs to), for `prefer=`."""
        ids: dict[str, int] = {}
        self.texts: list[str] = []  # distinct stripped lines, by id
        seq = array("i")  # every line: the id of its text
        fid_seq = array("i")  # every line: its file
        starts = array("i")  # where each file's lines begin in `seq`
        for fid, raw in files:
            starts.append(len(seq))
            for ln in _clean(raw):
                found = ids.get(ln)
                if found is None:
                    found = ids[ln] = len(self.texts)
                    self.texts.append(ln)
                seq.append(found)
                fid_seq.append(fid)
        self._ids = ids
        self._seq = np.frombuffer(seq, dtype=np.int32).copy()
        self._fid = np.frombuffer(fid_seq, dtype=np.int32).copy()
        n = len(self._seq)
        first = np.zeros(n, dtype=bool)  # a file's first line: nothing before it
        begins = np.frombuffer(starts, dtype=np.int32)
        first[begins[begins < n]] = True
        # Prefix search: the lines sorted by text, then file (bisect on `lines`).
        rank = np.empty(len(self.texts), dtype=np.int64)
        rank[sorted(range(len(self.texts)), key=self.texts.__getitem__)] = np.arange(len(self.texts))
        order = np.lexsort((self._fid, rank[self._seq])) if n else np.zeros(0, np.int64)
        self._sorted_ids = self._seq[order]
        self._sorted_fids = self._fid[order]
        self.lines = [self.texts[i] for i in self._sorted_ids.tolist()]
        # Next line: the positions after one previous line (key: its id) or two (key: both ids).
        positions = np.arange(n, dtype=np.int64)
        after1 = positions[1:][~first[1:]] if n else positions
        after2 = after1[~first[after1 - 1]] if len(after1) else after1
        width = max(len(self.texts), 1)
        self._key1, self._pos1 = _sorted_keys(self._seq[after1 - 1].astype(np.int64), after1)
        self._key2, self._pos2 = _sorted_keys(self._seq[after2 - 2].astype(np.int64) * width + self._seq[after2 - 1], after2)
        self._width = width
        # file id -> group, only with two groups or more: one folder's index pays nothing for it
        self._group: npt.NDArray[np.int16] | None = None
        if groups and len(set(groups.values())) > 1:
            table = np.full(max(max(groups), int(self._fid.max()) if n else 0) + 1, -1, dtype=np.int16)
            for fid, group in groups.items():
                table[fid] = group
            self._group = table

    def grouped(self) -> bool:
        return self._group is not None

    def prefix_counts(self, prefix: str, exclude: int | None, prefer: int | None = None) -> Counter[str] | None:
        lo = bisect.bisect_left(self.lines, prefix)
        hi = bisect.bisect_right(self.lines, prefix + "\U0010ffff")
        if hi - lo > _MAX_SCAN:
            return None
        found = self._sorted_ids[lo:hi]
        fids = self._sorted_fids[lo:hi]
        if exclude is not None:
            keep = fids != exclude
            found, fids = found[keep], fids[keep]
        return self._counted(found, fids, prefer)

    def next_counts(self, prev: tuple[str, ...], exclude: int | None, prefer: int | None = None) -> Counter[str]:
        last = self._ids.get(prev[-1])
        if last is None:
            return Counter()
        if len(prev) == 2:
            before = self._ids.get(prev[0])
            if before is None:
                return Counter()
            keys, positions, key = self._key2, self._pos2, before * self._width + last
        else:
            keys, positions, key = self._key1, self._pos1, last
        found = positions[int(keys.searchsorted(key)):int(keys.searchsorted(key, "right"))]
        if exclude is not None:
            found = found[self._fid[found] != exclude]
        return self._counted(self._seq[found], self._fid[found], prefer)

    def _counted(self, text_ids: npt.NDArray[np.int32], fids: npt.NDArray[np.int32] | None = None,
                 prefer: int | None = None) -> Counter[str]:
        texts = self.texts
        counts = Counter({texts[i]: c for i, c in Counter(text_ids.tolist()).items()})
        if prefer is not None and self._group is not None and fids is not None and len(fids):
            own = self._group[fids] == prefer
            for i, c in Counter(text_ids[own].tolist()).items():  # each own line: OWN_GROUP_WEIGHT in all
                counts[texts[i]] += (OWN_GROUP_WEIGHT - 1.0) * c  # type: ignore[assignment]
        return counts


def _sorted_keys(keys: npt.NDArray[np.int64], positions: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """(keys sorted, the positions in the same order): the positions of one key are a slice."""
    order = np.argsort(keys, kind="stable")
    return keys[order], positions[order].astype(np.int32)


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
    prefer: int | None = None,
) -> list[LineHit]:
    """Candidate whole lines for the cursor's line, best first.

    `cache_lines` are the current file's complete lines before the cursor (the cache component).
    `prefer`: the group (workspace folder) of the current file, whose lines count more.
    """
    hits: list[LineHit] = []
    local = _clean(cache_lines)
    stripped = line_prefix.lstrip()
    if len(stripped) >= min_prefix:
        counts: Counter[str] = Counter()
        if index is not None:
            found = index.prefix_counts(stripped, exclude, prefer)
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
        counts = index.next_counts(key, exclude, prefer) if index is not None else Counter()
        last = key[-1]
        for i in range(depth, len(local)):
            if local[i - 1] == last and (depth == 1 or local[i - 2] == key[0]):
                counts[local[i]] += cache_boost  # type: ignore[assignment]
        hit = _best(counts, stripped, kind, prior=1.0)
        if hit:
            hits.append(hit)
    hits.sort(key=lambda h: -h.confidence)
    return hits
