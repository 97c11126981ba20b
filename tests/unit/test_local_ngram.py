"""The n-gram model: suffix-array counts equal brute-force counts, exclusion, the cache, generation."""

from __future__ import annotations

import random
from collections import Counter

from heedls.server.providers.code_tokens import EOL, cursor_context, render, tokenize_source
from heedls.server.providers.ngram import CacheModel, GlobalModel, NgramModel, Vocab
from heedls.server.providers.retrieval import LineIndex, lookup


def _brute(tokens: list[str], ctx: list[str]) -> Counter[str]:
    k = len(ctx)
    return Counter(tokens[i + k] for i in range(len(tokens) - k) if tokens[i : i + k] == ctx)


def test_suffix_array_counts_equal_brute_force_counts() -> None:
    rng = random.Random(7)
    alphabet = ["a", "b", "c", "(", ")", EOL]
    files = [(f"f{i}", [rng.choice(alphabet) for _ in range(300)]) for i in range(3)]
    vocab = Vocab()
    model = GlobalModel(vocab, files)
    stream = [t for _, toks in files for t in toks]
    for _ in range(40):
        start = rng.randrange(len(stream) - 6)
        ctx = stream[start : start + rng.randint(1, 5)]
        ranges = model.ranges([vocab.get(t) for t in reversed(ctx)])
        lo, hi = ranges[len(ctx) - 1]
        counts = model.counts(lo, hi, None)
        assert counts is not None
        got = Counter({vocab.strings[t]: int(c) for t, c in counts.counts.items()})
        # Files are concatenated (each real file starts with BOF, so a request context, which has
        # BOF only at its start, never matches across a boundary).
        assert got == _brute(stream, ctx)


def test_an_excluded_file_contributes_no_counts() -> None:
    files = [("a", ["x", "=", "1", EOL] * 3), ("b", ["x", "=", "2", EOL])]
    vocab = Vocab()
    model = GlobalModel(vocab, files)
    ranges = model.ranges([vocab.get("="), vocab.get("x")])
    lo, hi = ranges[-1]
    full = model.counts(lo, hi, None)
    held = model.counts(lo, hi, model.spans["a"])
    assert full is not None and held is not None
    assert full.counts == {vocab.get("1"): 3.0, vocab.get("2"): 1.0}
    assert held.counts == {vocab.get("2"): 1.0}


def test_cache_model_counts_successors_of_each_context_length() -> None:
    vocab = Vocab()
    ids = [vocab.id(t) for t in ["a", "b", "c", "a", "b", "d", "x", "b", "c"]]
    levels = CacheModel(ids).all_counts([vocab.id("a"), vocab.id("b")])
    assert levels[0] is not None and levels[1] is not None
    assert levels[0].counts == {vocab.id("c"): 2.0, vocab.id("d"): 1.0}  # after "b"
    assert levels[1].counts == {vocab.id("c"): 1.0, vocab.id("d"): 1.0}  # after "a b"


def test_generation_completes_a_repeated_line_from_the_cache() -> None:
    prefix = (
        "def total(items):\n"
        "    for i in range(len(items)):\n"
        "        pass\n"
        "def again(items):\n"
        "    for i in range(len("
    )
    vocab = Vocab()
    model = NgramModel(vocab, GlobalModel(vocab, []))
    ctx = cursor_context(prefix)
    cache = CacheModel([vocab.id(t) for t in tokenize_source(prefix.rpartition("\n")[0])])
    gens = model.generate(ctx.tokens, ctx.pending, cache)
    assert gens, "no generation"
    best = gens[0]
    assert best.complete
    assert render(best.tokens, ctx.pending) == "items)):"
    assert 0.0 < best.prob <= 1.0


def test_retrieval_finds_the_same_line_start_elsewhere_but_not_in_the_excluded_file() -> None:
    index = LineIndex([
        (0, ["import os", "from collections import OrderedDict, defaultdict"]),
        (1, ["from collections import OrderedDict, defaultdict", "import sys"]),
        (2, ["from collections import Counter"]),
    ])
    hits = lookup(index, [], "from collections import ", [], exclude=None)
    assert hits[0].line == "from collections import OrderedDict, defaultdict"
    assert hits[0].support == 2 and hits[0].total == 3
    held = lookup(index, [], "from collections import ", [], exclude=0)
    assert held[0].support == 1


def test_retrieval_proposes_the_line_that_followed_the_same_previous_line() -> None:
    index = LineIndex([(0, ["import os", "import sys"]), (1, ["import os", "import sys", "x = 1"])])
    hits = lookup(index, [], "", ["import os"], exclude=None)
    assert hits and hits[0].line == "import sys" and hits[0].kind == "next"
