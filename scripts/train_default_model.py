#!/usr/bin/env python
"""Train the shipped default acceptance model (both stages): server/data/acceptance-default.json.

    .venv/bin/python scripts/train_default_model.py --version-date 2026-12-01   # the shipped files, byte for byte

1. Replays real code nobody here wrote (the pinned wheels of `scripts/replay-corpus.txt`, fetched
   once by `scripts/replay_corpus.py`) through the local provider and the pipeline's
   post-processing (`heedls replay`, seeded, synthetic timing), cached in the user cache directory
   (platformdirs) so a re-run trains from the same events.
2. Fits `context@local` / `suggestion@local` (used when the suggestions come from the embedded
   `local` provider) on that replay, and `context` / `suggestion` (every other provider: LLMs) on the
   real human decisions of `../shared/bench/acceptance/cups-dev.jsonl` when present. The replay's
   labels are a proxy (does the suggestion match what the author wrote?) and its timing synthetic;
   a replay-only model scored on CUPS is badly calibrated for people (docs/acceptance.md), so the
   human side (previous outcome, pauses, what people take) is learned from people. Each regime's
   model is exactly what `heedls eval acceptance` evaluates on its data. The sealed evaluation half
   of CUPS is other people and is never read.
3. Each stage: learner `blend` (logistic regression + boosted trees, mean logit), Platt calibration
   and the keep-95 %-of-accepted threshold from out-of-fold scores grouped by session.

The fit is deterministic given the events (NumPy with fixed seeds), and so is the replay given the
corpus, the seed and heedls' own code (its latencies are drawn, not measured): from a clean checkout
the script trains the shipped files byte for byte with the shipped model's `--version-date`, and
says so on stderr when its replay is not the shipped model's (the provider's code changed since).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs

ROOT = Path(__file__).resolve().parents[1]
CUPS = ROOT.parent / "shared" / "bench" / "acceptance" / "cups-dev.jsonl"
OUT = ROOT / "server" / "data" / "acceptance-default.json"
PRIOR_OUT = ROOT / "server" / "data" / "acceptance-prior.json.gz"
CORPUS_LIST = ROOT / "scripts" / "replay-corpus.txt"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cuts", type=int, default=5000,
                        help="cut points of the replay (default 5000: every project of the corpus, 4 files each)")
    parser.add_argument("--kind", default="blend", choices=("logreg", "gbm", "blend"))
    parser.add_argument("--keep", type=float, default=0.95)
    parser.add_argument("--cups", type=Path, default=CUPS,
                        help=f"real decisions to add (default: {CUPS}, cups-dev beside this checkout)")
    parser.add_argument("--no-cups", action="store_true", help="train on the replay alone")
    parser.add_argument("--replay", type=Path, default=None, help="use this replay file instead of generating one")
    parser.add_argument("-o", "--output", type=Path, default=OUT)
    parser.add_argument("--prior-output", type=Path, default=PRIOR_OUT)
    parser.add_argument("--version-date", type=dt.date.fromisoformat, default=_build_date(),
                        help="the date in the model's version, YYYY-MM-DD (default: $SOURCE_DATE_EPOCH, else today); "
                             "the shipped model's own date reproduces its file byte for byte from the replay "
                             "it was trained on (not from a new replay: docs/acceptance.md)")
    args = parser.parse_args()
    if not args.no_cups and not args.cups.is_file():
        # Never a silently replay-only model: it is badly calibrated for people (docs/acceptance.md).
        parser.error(f"the real decisions are not at {args.cups}: pass --cups PATH to cups-dev.jsonl "
                     "(the shipped model is trained with them), or --no-cups for a replay-only model")
    if args.replay is not None and not args.replay.is_file():
        # not a new replay written there: --replay names the events to train on
        parser.error(f"no replay at {args.replay}: --replay names an existing file (leave it out to replay)")
    from heedls.server.acceptance.replay import prepare_output, run

    for output in (args.output, args.prior_output):  # checked now, not after minutes of replay and fitting
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            prepare_output(output)
        except OSError as exc:
            parser.error(f"cannot write {output}: {exc.strerror or exc}")

    from heedls.server.acceptance.evaluate import build_dataset, canonical_order
    from heedls.server.acceptance.features import STAGE_FEATURES
    from heedls.server.acceptance.prior import Prior, PriorSource, StageRows

    cache = Path(platformdirs.user_cache_dir("heedls"))  # outside the checkout: never committed by accident
    corpus_mod = _replay_corpus()
    corpus = corpus_mod.corpus_dir(cache, CORPUS_LIST)
    replay_path = args.replay or cache / f"acceptance-replay-{corpus.name}-seed{args.seed}-{args.cuts}.jsonl"
    if not replay_path.exists():
        replay_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            sources = [corpus_mod.prepare(cache, CORPUS_LIST)]
        except corpus_mod.CorpusError as exc:
            raise _Refused(f"replay corpus: {exc}") from exc
        print(f"replaying {args.cuts} cut points (seed {args.seed}) -> {replay_path}", file=sys.stderr)
        partial = replay_path.with_name(replay_path.name + ".partial")
        summary = run(sources, partial, args.cuts, args.seed, "local")
        print(json.dumps(summary), file=sys.stderr)
        if summary["interrupted"]:  # never cache (and later train on) a replay cut short
            partial.unlink(missing_ok=True)
            print("interrupted: nothing cached, nothing trained", file=sys.stderr)
            return 130
        partial.replace(replay_path)
    elif args.replay is None:  # made by an earlier run, maybe with other provider code
        print(f"replay: the cached {replay_path} (delete it to replay with the code as it is now)", file=sys.stderr)
    replay = _training_events(replay_path, "replay")
    sources_meta: list[dict[str, object]] = [{"name": "replay", "file": replay_path.name, "seed": args.seed,
                                              "cuts": args.cuts, "sha256": _sha(replay_path)}]
    if args.replay is None:  # made here, from the pinned corpus
        sources_meta[0]["corpus"] = f"scripts/{CORPUS_LIST.name} sha256 {_sha(CORPUS_LIST)}"
    _note_replay_differs(str(sources_meta[0]["sha256"]), args.seed, args.cuts)
    human = None
    if not args.no_cups and args.cups.exists():
        human = _training_events(args.cups, "--cups")
        sources_meta.append({"name": "cups-dev", "file": args.cups.name, "sha256": _sha(args.cups),
                             "origin": "github.com/microsoft/coderec_programming_states (MIT), Mozannar et al., "
                                       "CHI 2024: the odd-numbered participants"})

    # The prior rows every fit learns from as well (prior.py): feature rows and labels only, no code.
    # In the canonical order evaluation uses, so a reordered input file trains the same model.
    datasets = {(name, stage): build_dataset(canonical_order(events), stage)
                for name, events in (("replay", replay), ("cups-dev", human)) if events is not None
                for stage in ("context", "suggestion")}
    sources = []
    for meta in sources_meta:
        name = str(meta["name"])
        rows = {stage: StageRows(STAGE_FEATURES[stage], datasets[(name, stage)].X, datasets[(name, stage)].y,
                                 tuple(map(str, datasets[(name, stage)].groups.tolist())))
                for stage in ("context", "suggestion")}
        sources.append(PriorSource(name, "replay" if name == "replay" else "human",
                                   frozenset(datasets[(name, "context")].groups.tolist()), rows,
                                   {k: v for k, v in meta.items() if k != "name"}))
    # Nothing replaces an output before every stage is fitted: a Ctrl-C or a crash in the fit
    # leaves the previous model *and* its prior as they were (never a new prior beside an old model).
    staged = Path(tempfile.mkdtemp(prefix="heedls-train-"))
    try:
        Prior(tuple(sources)).save(staged / args.prior_output.name)
        prior = Prior.load(staged / args.prior_output.name)  # train on exactly what ships (rounded values)
        return _fit_and_save(args, datasets, prior, human is not None, sources_meta, staged / args.prior_output.name)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _fit_and_save(args: argparse.Namespace, datasets: dict[tuple[str, str], Any], prior: Any, have_human: bool,
                  sources_meta: list[dict[str, object]], staged_prior: Path) -> int:
    from heedls.server.acceptance.evaluate import prior_rows
    from heedls.server.acceptance.features import STAGE_FEATURES
    from heedls.server.acceptance.model import AcceptanceModel, fit_stage
    from heedls.server.files import replaced_atomically

    # One model per regime, each exactly what `heedls eval acceptance` evaluates on its data:
    # "{stage}@local" from the replay of the local provider; "{stage}" (every other provider: LLMs)
    # from real human decisions when we have them, else from the replay too.
    plan = [("local", "replay"), (None, "cups-dev" if have_human else "replay")]
    stages = {}
    for provider, source in plan:
        for stage in ("context", "suggestion"):
            key = f"{stage}@{provider}" if provider else stage
            data = datasets[(source, stage)]
            rows, used = prior_rows(data, prior)
            print(f"{key}: {data.y.size} rows, {int(data.y.sum())} accepted ({source}); prior {used}",
                  file=sys.stderr)
            stages[key] = fit_stage(key, STAGE_FEATURES[stage], data.X, data.y, data.groups, kind=args.kind,
                                    keep_accepted=args.keep, seed=args.seed, prior=rows,
                                    meta={"source": source, "prior_sources": used})
    # The version names the data *and* the feature set / learner, so a changed extractor is a new model.
    # The fitted stages themselves are hashed too: two fits of different code never share a version.
    digest = hashlib.sha256(json.dumps([[s["sha256"] for s in sources_meta], "per-provider", STAGE_FEATURES, args.kind,
                                        args.keep, {k: v.to_json() for k, v in stages.items()}]).encode()).hexdigest()[:8]
    version = f"default-{args.version_date:%Y%m%d}-s{args.seed}-{digest}"
    model = AcceptanceModel(version, stages, "accepted", {
        "trained_by": "scripts/train_default_model.py", "sources": sources_meta, "kind": args.kind,
        "keep_accepted": args.keep, "numpy": np.__version__,
    })
    with replaced_atomically(args.prior_output) as tmp:  # the prior first: the model names its rows' sources
        shutil.copyfile(staged_prior, tmp)
    model.save(args.output)
    print(json.dumps({"version": version, "output": str(args.output),
                      "thresholds": {k: round(v.threshold, 4) for k, v in stages.items()}}), file=sys.stderr)
    return 0


def _replay_corpus() -> Any:
    """scripts/replay_corpus.py, by its path: this script is also loaded by path (tests), with no
    scripts/ folder on sys.path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("replay_corpus", ROOT / "scripts" / "replay_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build_date() -> dt.date:
    """$SOURCE_DATE_EPOCH (the reproducible-builds convention) when set, else today."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch.isdigit():
        return dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc).date()
    return dt.date.today()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class _Refused(Exception):
    """Training data the script will not train the shipped model on (a one-line reason)."""


def _training_events(path: Path, what: str) -> list[Any]:
    """The events of `path`; raises _Refused when a line is malformed or no event is labelled: a
    model fitted on 0 rows (threshold 0.0: it shows everything) is not a model."""
    from heedls.server.acceptance.evaluate import load_events

    events, skipped = load_events(path)
    if skipped:
        raise _Refused(f"{what} {path}: {skipped} malformed line(s); nothing trained, nothing written")
    if not any(event.outcome is not None for event in events):
        raise _Refused(f"{what} {path}: no labelled event (accepted or rejected) in {len(events)} event(s); "
                       "nothing trained, nothing written")
    return list(events)


def _note_replay_differs(sha: str, seed: int, cuts: int) -> None:
    """Says so when the replay is not the one the shipped model was trained on: the model cannot
    then reproduce the shipped file, whatever --version-date says."""
    try:
        shipped = json.loads(OUT.read_text(encoding="utf-8"))["meta"]["sources"][0]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return
    if shipped.get("sha256") != sha and (shipped.get("seed"), shipped.get("cuts")) == (seed, cuts):
        print(f"note: this replay (sha256 {sha}) is not the one {shipped.get('file')} the shipped model "
              f"{OUT.name} was trained on (sha256 {shipped.get('sha256')}); the model trained now will differ "
              "from it: the provider or the post-processing changed since, or the replay was not made from "
              "scripts/replay-corpus.txt "
              "(docs/acceptance.md, 'The shipped model')", file=sys.stderr)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except _Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        sys.exit(130)
