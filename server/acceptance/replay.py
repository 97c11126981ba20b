"""`heedls replay`: proxy-labelled suggestion events from real code nobody here wrote.

How a replay is made (docs/acceptance.md has the rationale):
1. *Projects*: each source directory holding packages (folders with `__init__.py`) yields one
   project per package; any other directory is one project; a file's project is its folder
   (a file named as a source follows the size rule below too, and is named when left out).
   A session is one project's (a developer working in one code base, on one day).
2. *Cut points*: per project up to `files_per_session` files (1 KB–200 KB of UTF-8 text) sampled
   with the seed, `per_file` cuts each, visited top to bottom as a user writes. With fewer than
   ALONE_FROM (10) projects whose first sessions plan too few cuts (one folder of one's own code),
   each project gives further sessions of its other files, one per day, until the cuts are planned
   or its files are used; with more, each session stays a project of its own. Half the cuts sit at
   a line start (after the indentation), half mid-line (a uniform column inside the line's code).
   Half of the requests see the rest of the file after the current line as the suffix (editing in
   the middle), half see none (writing new code at the end; the suffix is then really empty,
   `suffix_known`).
3. The provider indexes the project like a workspace (the current file is held out of that index:
   the local provider always excludes the current document) and gets the text before the cursor;
   its first candidate goes through the pipeline's post-processing, exactly as in the server. The
   local provider gets a 0.5 s budget instead of the server's 45 ms so that the replay does not
   depend on how busy the machine is (its latency is still measured and recorded).
4. *Label* (what a user who knew what they were about to type would do), against the truth T =
   the text the author actually wrote from the cursor on, cut to as many lines as the suggestion S:
   accepted iff S == T (exact), or T starts with S and S is >= 4 characters long once its leading
   and trailing blanks are stripped (a correct partial; blanks inside S count), or the edit
   similarity (difflib ratio) of S and T is >= 0.8; otherwise rejected (S and T are compared
   without trailing blanks). Persisted (30/120/600 s) = exact, or a correct partial, or similarity
   >= 0.9: the accepted text is still there as written (the author typed on after a correct
   partial; the server's persistence check counts text still present verbatim as kept), or
   little is left to edit. An accepted S below 0.9 that is neither is accepted, not persisted.
5. Timing is synthetic and carries no signal: gaps between requests ~ lognormal (median 8 s),
   decision time ~ lognormal (median 1.2 s), and by default the latency too (~ lognormal, median
   8 ms for the local provider, 400 ms for an HTTP one, from an RNG of its own so that the cut
   points do not depend on it). A measured latency (`latency="measured"`: provider +
   post-processing time) is the replaying machine's, not a user's, and makes two replays of the
   same sources differ. Every event carries `extra.synthetic = true` and `extra.replay = {...}`
   (`latency` in it says which).
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import errno
import importlib
import logging
import math
import os
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heedls.server.events import SuggestionEvent
from heedls.server.files import output_file

log = logging.getLogger(__name__)

SIMILARITY_ACCEPT = 0.8
SIMILARITY_PERSIST = 0.9
MIN_PARTIAL_CHARS = 4
REPLAY_BUDGET_S = 0.5
MAX_PREFIX_CHARS = 6000  # InlineConfig.max_prefix_chars / max_suffix_chars defaults
MAX_SUFFIX_CHARS = 2000
SKIP_PROJECTS = frozenset({"test", "tests", "encodings", "heedls", "__phello__", "pydoc_data", "idlelib",
                           "lib2to3", "turtledemo"})
PROVIDERS: tuple[str, ...] = ("local", "openai", "ollama", "llamacpp")  # config.ProviderName
# From this many projects on, each session is a project of its own: the sessions of one project share
# its code and are less independent. Fewer projects give further sessions (_more_sessions).
ALONE_FROM = 10
REPLAY_EPOCH = 1_700_000_000.0  # synthetic clock start (2023-11-14), fixed for reproducibility
LATENCIES: tuple[str, ...] = ("synthetic", "measured")
# Medians of the synthetic latency (ms): the local provider answers in milliseconds, an LLM in tenths of a second.
SYNTHETIC_LATENCY_MEDIAN_MS = {"local": 8.0, "http": 400.0}
RULE = (f"accepted iff exact, or correct partial (truth starts with it, >= {MIN_PARTIAL_CHARS} chars), or "
        f"difflib ratio >= {SIMILARITY_ACCEPT} against the truth cut to the suggestion's line count")


@dataclass(frozen=True)
class Cut:
    path: Path
    offset: int
    line: int
    column: int
    kind: str  # "start" | "mid"
    with_suffix: bool


def _more_sessions(plan: Sequence[tuple[Path, list[Path]]], projects: Sequence[tuple[Path, list[Path]]],
                   wanted: float, per_file: int, files_per_session: int, seed: int) -> list[tuple[Path, list[Path]]]:
    """Further sessions of the planned projects (other files of each, another day), round after
    round, while the first sessions plan fewer than `wanted` more cuts: one folder of code gave one
    session of `files_per_session` files and stopped there (40 events of `--cuts 1000`, too few
    sessions to evaluate). Drawn with an RNG of their own and visited after every first session, so
    a replay its first sessions fill is the same as it was."""
    if wanted <= 0:
        return []
    rng = random.Random(f"heedls-replay-more-sessions-{seed}")
    files_of = dict(projects)
    left: dict[Path, list[Path]] = {}
    for root, first in plan:
        taken = set(first)
        left[root] = [f for f in files_of.get(root, []) if f not in taken]
    more: list[tuple[Path, list[Path]]] = []
    while wanted > 0 and any(left.values()):
        for root, _ in plan:
            rest = left[root]
            if not rest or wanted <= 0:
                continue
            picked = rng.sample(rest, min(files_per_session, len(rest)))
            taken = set(picked)
            left[root] = [f for f in rest if f not in taken]
            more.append((root, picked))
            wanted -= len(picked) * per_file
    return more


def find_projects(sources: Sequence[Path]) -> list[tuple[Path, list[Path]]]:
    """(workspace, candidate files) per project, in a stable order."""
    projects: dict[Path, list[Path]] = {}
    for source in sources:
        source = source.resolve()
        if source.is_file():
            # A file named on the command line follows the folders' rule (its size bounds the
            # replay's time and gives it code to cut); the user hears why one is left out.
            why = _ineligible(source, explicit=True) or _not_text(source)
            if why is None:
                projects.setdefault(source.parent, []).append(source)
            else:
                log.warning("replay: %s %s; skipped", source, why)
            continue
        if not source.is_dir():
            # a pipe or a device exists: "does not exist" sent the user looking for a typo
            log.warning("replay: %s %s; skipped", source,
                        "is neither a file nor a folder (a pipe, a socket or a device)" if source.exists()
                        else "does not exist")
            continue
        try:
            subs = sorted(p for p in source.iterdir() if p.is_dir() and (p / "__init__.py").exists()
                          and p.name not in SKIP_PROJECTS and not p.name.startswith(("_", ".")))
        except OSError as exc:  # a folder the user may not list: a PermissionError traceback until 2026-12-03
            log.warning("replay: %s cannot be read (%s); skipped", source, exc.strerror or exc)
            continue
        if subs:
            for sub in subs:
                projects.setdefault(sub, []).extend(_eligible(sub.rglob("*.py")))
        else:
            projects.setdefault(source, []).extend(_eligible(source.glob("*.py")))
    return [(root, sorted(set(files))) for root, files in sorted(projects.items()) if files]


Projects = list[tuple[Path, list[Path]]]  # what find_projects returns


def read_as(output: Path | None, sources: Sequence[Path], projects: Projects) -> list[Path]:
    """The files a replay of `sources` reads (those named, replayed or not, those of its `projects`,
    and any other *.py in a project, which the provider indexes) that `output` is, by any name (a
    symlink, a hard link): writing it destroys them."""
    if output is None:
        return []
    try:
        written = output.stat()
    except OSError:  # nothing there yet: no file read can be it
        return []
    read = [source for source in sources if source.is_file()] + [f for _, files in projects for f in files]
    same = [path for path in read if _same_file(path, written)]
    target = output.resolve()
    if not same and target.suffix == ".py" and any(target.is_relative_to(root) for root, _ in projects):
        same.append(target)
    return same


def _same_file(path: Path, stat: os.stat_result) -> bool:
    try:
        return os.path.samestat(path.stat(), stat)
    except OSError:
        return False


def _eligible(paths: Iterable[Path]) -> list[Path]:
    kept = []
    for path in paths:
        if _ineligible(path) is not None:  # silent: most are small __init__.py files and tests
            continue
        why = _not_text(path)
        if why is not None:  # binary data named *.py is a surprise, and would be cut into garbage
            log.warning("replay: %s %s; skipped", path, why)
            continue
        kept.append(path)
    return kept


MIN_FILE_BYTES = 1_000
MAX_FILE_BYTES = 200_000


def _ineligible(path: Path, explicit: bool = False) -> str | None:
    """Why `path` is not replayed (None: it is): outside tests (found in a folder only: tests are
    repetitive enough to flatter any provider), a Python file of 1 KB-200 KB."""
    if explicit and path.suffix != ".py":
        return "is not a Python file (*.py)"
    if not explicit and any(part in ("test", "tests", "__pycache__") for part in path.parts[-4:-1]):
        return "is a test"
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not MIN_FILE_BYTES <= size <= MAX_FILE_BYTES:
        return f"has {size:,} bytes, outside the {MIN_FILE_BYTES:,}-{MAX_FILE_BYTES:,} a replayed file has"
    return None


def _not_text(path: Path) -> str | None:
    """Why `path` is no source text (None: it is): not UTF-8 (the encoding the replay reads), or
    holding NUL bytes, which no Python source can (the interpreter refuses them)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except UnicodeDecodeError as exc:
        return f"is not UTF-8 text ({exc.reason} at byte {exc.start})"
    nul = text.find("\x00")
    return None if nul < 0 else f"is not text (a NUL byte at character {nul:,})"


def sample_cuts(text: str, path: Path, count: int, rng: random.Random) -> list[Cut]:
    lines = text.split("\n")
    offsets = [0]
    for ln in lines:
        offsets.append(offsets[-1] + len(ln) + 1)
    code = [i for i, ln in enumerate(lines) if len(ln.strip()) >= 2 and i > 0]
    if not code:
        return []
    picked = rng.sample(code, min(count, len(code)))
    cuts = []
    for k, i in enumerate(sorted(picked)):
        line = lines[i].rstrip()
        indent = len(line) - len(line.lstrip())
        if rng.random() < 0.5 or len(line) - indent < 2:
            kind, col = "start", indent
        else:
            kind, col = "mid", rng.randint(indent + 1, len(line) - 1)
        cuts.append(Cut(path, offsets[i] + col, i, col, kind, rng.random() < 0.5))
    return cuts


def similarity(a: str, b: str) -> float:
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def label_suggestion(suggestion: str, truth: str) -> dict[str, Any]:
    """Compare a suggestion with what the author wrote next (see the module docstring)."""
    n_lines = suggestion.count("\n") + 1
    target = "\n".join(truth.split("\n")[:n_lines])
    s, t = suggestion.rstrip(), target.rstrip()
    exact = s == t
    partial = not exact and t.startswith(s) and len(s.strip()) >= MIN_PARTIAL_CHARS
    sim = 1.0 if exact else similarity(s, t)
    accepted = exact or partial or sim >= SIMILARITY_ACCEPT
    persisted = accepted and (exact or partial or sim >= SIMILARITY_PERSIST)
    return {"accepted": accepted, "persisted": persisted, "exact": exact, "partial": partial,
            "similarity": round(sim, 4)}


def _load_chooser() -> Callable[[Any, Any], tuple[str, Any] | None]:
    """postprocess.first_shown: what the server shows of a provider's candidates."""
    module = importlib.import_module("heedls.server.pipeline.postprocess")
    fn: Callable[[Any, Any], tuple[str, Any] | None] = module.first_shown
    return fn


def _provider_config(name: str) -> tuple[Any, list[str]]:
    """The current folder's provider settings with `name` as the provider, and the settings' warnings."""
    from dataclasses import replace
    from typing import cast

    from heedls.server import config as config_mod
    from heedls.server.config import ProviderName

    cfg, warnings = config_mod.load(Path.cwd())
    return replace(cfg.provider, name=cast(ProviderName, name)), warnings


def provider_problems(name: str) -> list[str]:
    """Why the HTTP provider `name` cannot work with the settings of the current folder (empty when
    it can): a replay meant for it would be the local provider's, labelled so, all through."""
    if name == "local":
        return []
    from heedls.server.providers.registry import config_problems

    return config_problems(_provider_config(name)[0])


def _make_provider(name: str, workspace: Path, cache_dir: Path) -> Any:
    """The configured provider for one project: `local`, or an HTTP one falling back to local."""
    from heedls.server.providers.local import IndexLimits, LocalProvider

    # A generous time budget: the server's 45 ms budget makes what the provider returns depend on the
    # machine's load, and a replay should be the same replay on a busy and an idle machine.
    local = LocalProvider(workspace, cache_dir=cache_dir, limits=IndexLimits(max_files=400, max_tokens=1_500_000),
                          budget_s=REPLAY_BUDGET_S)
    local.index_now()
    if name == "local":
        return local
    from heedls.server.providers.registry import build_provider

    config, warnings = _provider_config(name)
    for warning in warnings:
        log.warning("%s", warning)
    # an unknown name is reported by build_provider, which then serves `local`
    return build_provider(config, local)


async def replay(sources: Sequence[Path], cuts: int = 1000, seed: int = 0, provider: str = "local",
                 per_file: int = 10, files_per_session: int = 4, deadline_s: float = 1.0,
                 progress: Callable[[int, int], None] | None = None,
                 make_provider: Callable[[Path, Path], Any] | None = None,
                 into: list[SuggestionEvent] | None = None, latency: str = "synthetic",
                 projects: Projects | None = None) -> list[SuggestionEvent]:
    """Replay `cuts` requests; `make_provider(workspace, cache_dir)` replaces the configured provider.
    Events are appended to `into` (a new list by default) as they are made, so a caller still has
    them when the replay is interrupted. `latency`: "synthetic" (drawn, the default: the same
    sources and seed give the same file) or "measured" (this machine's). `projects`:
    find_projects(sources), when the caller has it already (its skips are said once)."""
    from heedls.server.providers.base import CompletionRequest

    if per_file <= 0 or files_per_session <= 0:
        raise ValueError(f"per_file and files_per_session must be positive, not {per_file} and {files_per_session}")
    if latency not in LATENCIES:
        raise ValueError(f"latency must be one of {', '.join(LATENCIES)}, not {latency!r}")
    # its own stream: drawing latencies must not move the cut points (str seeds hash the same in every run)
    latency_rng = random.Random(f"heedls-replay-latency-{seed}") if latency == "synthetic" else None
    choose = _load_chooser()
    rng = random.Random(seed)
    projects = list(find_projects(sources) if projects is None else projects)  # shuffled: a copy
    rng.shuffle(projects)
    plan: list[tuple[Path, list[Path]]] = []
    planned = 0
    for root, files in projects:
        if planned >= 1.5 * cuts:  # short files yield fewer cuts than asked: plan with room to spare
            break
        if len(files) < 2 and len(projects) > 1:
            continue  # nothing to index once the file is held out
        picked = rng.sample(files, min(files_per_session, len(files)))
        plan.append((root, picked))
        planned += len(picked) * per_file
    if len(plan) < ALONE_FROM:
        plan += _more_sessions(plan, projects, 1.5 * cuts - planned, per_file, files_per_session, seed)
    events: list[SuggestionEvent] = [] if into is None else into
    done = 0
    with tempfile.TemporaryDirectory(prefix="heedls-replay-") as tmp:
        for s_index, (root, files) in enumerate(plan):
            if done >= cuts:
                break
            session = f"replay-{seed}-{s_index:03d}-{root.name}"
            clock = REPLAY_EPOCH + s_index * 86_400.0
            backend = (make_provider or (lambda ws, cache: _make_provider(provider, ws, cache)))(root, Path(tmp))
            try:
                for path in files:
                    text = path.read_text(encoding="utf-8", errors="replace")
                    for cut in sample_cuts(text, path, min(per_file, cuts - done), rng):
                        if done >= cuts:
                            break
                        clock += rng.lognormvariate(math.log(8.0), 0.9)
                        event = await _one(backend, choose, CompletionRequest, text, cut, root, session,
                                           clock, deadline_s, rng, seed, latency_rng)
                        events.append(event)
                        done += 1
                        if progress is not None:
                            progress(done, cuts)
                        if event.decision_ms:
                            clock += event.decision_ms / 1000.0
            finally:
                closer = getattr(backend, "aclose", None)
                if closer is not None:
                    await closer()
    return events


async def _one(backend: Any, choose: Callable[[Any, Any], tuple[str, Any] | None], request_cls: Any, text: str, cut: Cut,
               root: Path, session: str, ts: float, deadline_s: float, rng: random.Random, seed: int,
               latency_rng: random.Random | None = None) -> SuggestionEvent:
    line_end = text.find("\n", cut.offset)
    line_end = len(text) if line_end < 0 else line_end
    document = text[: cut.offset] + (text[line_end:] if cut.with_suffix else "")
    # What the server sends and records: the text around the cursor, truncated as InlineConfig does.
    prefix = text[max(0, cut.offset - MAX_PREFIX_CHARS): cut.offset]
    suffix = text[line_end: line_end + MAX_SUFFIX_CHARS] if cut.with_suffix else ""
    request = request_cls(prefix=prefix, suffix=suffix, path=str(cut.path), language="python", line=cut.line,
                          character=cut.column, workspace=root, max_lines=8, document=document)
    started = time.perf_counter()
    try:
        candidates = await backend.complete(request, deadline_s)
    except Exception as exc:  # a failing provider is an empty suggestion, as in the server
        log.debug("provider failed: %s", exc)
        candidates = []
    shown = choose(candidates, request)
    latency = round((time.perf_counter() - started) * 1000.0, 3)
    if latency_rng is not None:  # one draw per request, answered or not: the stream stays aligned
        median = SYNTHETIC_LATENCY_MEDIAN_MS["local" if getattr(backend, "name", None) == "local" else "http"]
        latency = round(latency_rng.lognormvariate(math.log(median), 0.6), 3)
    try:
        rel = str(cut.path.relative_to(root.parent))
    except ValueError:
        rel = cut.path.name
    info: dict[str, Any] = {"file": rel, "offset": cut.offset, "kind": cut.kind, "seed": seed, "rule": RULE,
                            "latency": "measured" if latency_rng is None else "synthetic"}
    extra: dict[str, Any] = {"synthetic": True, "suffix_known": True, "replay": info}
    event = SuggestionEvent(id=f"r-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}", session=session,
                            ts=round(ts, 3), language="python", file=rel, prefix=prefix, suffix=suffix,
                            latency_ms=latency, extra=extra)
    if shown is None:
        info["empty"] = True
        event.provider = getattr(backend, "name", None)
        return event
    suggestion, chosen = shown
    verdict = label_suggestion(suggestion, text[cut.offset:])
    info.update(verdict)
    event.suggestion = suggestion
    event.shown = True
    event.provider = chosen.provider
    event.model = chosen.model
    if chosen.confidence is not None:
        extra["confidence"] = chosen.confidence
    if chosen.logprob is not None:
        extra["logprob"] = chosen.logprob
    if chosen.source:
        extra["source"] = chosen.source
    event.outcome = "accepted" if verdict["accepted"] else "rejected"
    event.decision_ms = round(rng.lognormvariate(math.log(1200.0), 0.6), 1)
    if verdict["accepted"]:
        event.persisted_30s = event.persisted_120s = event.persisted_600s = bool(verdict["persisted"])
    return event


def run(sources: Sequence[Path], output: Path | None, cuts: int, seed: int, provider: str, per_file: int = 10,
        files_per_session: int = 4, quiet: bool = False, latency: str = "synthetic",
        projects: Projects | None = None) -> dict[str, Any]:
    """Blocking wrapper for the CLI and the training script, with a progress bar on stderr.

    The output is checked before the replay starts (`prepare_output`: a replay can take minutes)
    and written atomically (a temporary file renamed over it); None is stdout (`-o -`), where only
    the events go. Ctrl-C stops the replay where it is and still writes the events made so far
    (`interrupted` in the summary says so): a long replay interrupted near its end is not lost. A
    replay that made no event writes nothing (`output` is then None in the summary, else the file
    or "-")."""
    from heedls.server.events import write_jsonl

    if output is not None:
        prepare_output(output)
    started = time.perf_counter()
    events: list[SuggestionEvent] = []
    interrupted = False
    with _interrupt_where_it_runs(), contextlib.ExitStack() as stack:
        tick = None if quiet else _progress_bar(stack, cuts)
        try:
            asyncio.run(replay(sources, cuts, seed, provider, per_file, files_per_session, progress=tick,
                               into=events, latency=latency, projects=projects))
        except KeyboardInterrupt:
            interrupted = True
    written = bool(events) or interrupted
    if written:
        try:
            if output is None:
                _write_stdout(events)
            else:
                with output_file(output) as tmp:
                    write_jsonl(events, tmp)
        except OSError as exc:  # a disk filled up meanwhile: minutes of replay are not thrown away
            kept = _keep_elsewhere(events)
            raise ReplayWriteError(output, exc, kept, len(events)) from exc
    labelled = [e for e in events if e.outcome is not None]
    return {"events": len(events), "labelled": len(labelled),
            "accepted": sum(1 for e in labelled if e.outcome == "accepted"),
            "sessions": len({e.session for e in events}), "seconds": round(time.perf_counter() - started, 1),
            "output": (str(output) if output is not None else "-") if written else None,
            "interrupted": interrupted}


def _write_stdout(events: list[SuggestionEvent]) -> None:
    """The events as JSONL on stdout, the bytes a file gets (UTF-8 whatever the locale)."""
    sys.stdout.flush()  # anything printed before goes first
    out = sys.stdout.buffer
    for event in events:
        out.write(event.to_json().encode("utf-8") + b"\n")
    out.flush()


class ReplayWriteError(OSError):
    """The events were made but `output` (None: stdout) could not be written; `kept` is where they
    went instead (None when nowhere could take them); `cause` is the error writing `output`."""

    def __init__(self, output: Path | None, cause: OSError, kept: Path | None, count: int) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.output, self.cause, self.kept, self.count = output, cause, kept, count


def _keep_elsewhere(events: list[SuggestionEvent]) -> Path | None:
    """The events in a file of the temporary directory, or None if that fails too."""
    from heedls.server.events import write_jsonl

    name = None
    try:
        fd, name = tempfile.mkstemp(prefix="heedls-replay-", suffix=".jsonl")
        os.close(fd)
        write_jsonl(events, Path(name))
        return Path(name)
    except OSError:
        if name is not None:
            with contextlib.suppress(OSError):
                Path(name).unlink()
        return None


def prepare_output(output: Path) -> None:
    """Raises OSError unless `output` can be written: not a directory, in an existing directory
    where a file can be created (tried, then removed)."""
    if output.is_dir():
        raise IsADirectoryError(errno.EISDIR, "it is a directory", str(output))
    parent = output.parent
    if not parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"no directory {parent}", str(parent))
    with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{output.name}.", suffix=".tmp"):
        pass


def _progress_bar(stack: contextlib.ExitStack, total: int) -> Callable[[int, int], None]:
    """A progress bar on stderr, open until `stack` closes; returns its update callback. When
    stderr is not a terminal (a log file, CI), where a live bar shows nothing, one line per tenth."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        return _progress_lines(total)
    bar = stack.enter_context(Progress("replay", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                       console=console, transient=True))
    task = bar.add_task("cuts", total=total)

    def tick(done: int, total: int) -> None:
        bar.update(task, completed=done)

    return tick


def _progress_lines(total: int) -> Callable[[int, int], None]:
    """`replay: 300/3000 cuts, 7 s` on stderr at each tenth of `total` (and the last)."""
    started = time.perf_counter()
    step = max(1, total // 10)

    def tick(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            print(f"replay: {done}/{total} cuts, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

    return tick


@contextlib.contextmanager
def _interrupt_where_it_runs() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt in whatever code is running, as in plain Python.

    asyncio.run would instead cancel its task at the next turn of the event loop, which waits for
    the synchronous work in progress: the local provider indexing a large project (20 s on
    site-packages' biggest). Only in the main thread, where signal handlers live."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, _raise_interrupt)  # not default_int_handler: asyncio.run replaces that one
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":  # pragma: no cover
    print(run([Path(p) for p in sys.argv[1:]], Path("replay.jsonl"), 200, 0, "local"))
