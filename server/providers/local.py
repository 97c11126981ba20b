"""The `local` provider: model-free, offline suggestions from the workspace's own code.

Three sources, combined and ranked by a calibrated confidence:
- an n-gram model over code tokens with a cache component (ngram.py): the workspace's tokens are the
  global model, the current file's text before the cursor the cache; it generates to the end of line;
- line retrieval (retrieval.py): a line seen elsewhere with the same start, or the line that followed
  the same previous line(s);
- jedi (jedi_source.py): names for the identifier or attribute being typed.

The workspace index (tokens and lines of every .py file, bounded) is built on a background thread
and persisted under cache_dir keyed by each file's content hash, so a restart only re-reads files
whose size or mtime changed. The current document is always excluded from the workspace index (its
disk copy is stale while it is being edited); its prefix feeds the cache component instead. The
benchmark relies on exactly this to hold a file out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import logging
import marshal
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from heedls.server.files import write_atomic
from heedls.server.providers.base import Candidate, CompletionRequest
from heedls.server.providers.code_tokens import (
    EOL,
    IND,
    START,
    CursorContext,
    DocTokens,
    LineState,
    cursor_context,
    render,
    tokenize_known,
    tokenize_source,
)
from heedls.server.providers.jedi_source import JediSource, NameCompletion
from heedls.server.providers.local_calibration import confidence
from heedls.server.providers.ngram import MAX_ORDER, CacheModel, GlobalModel, NgramModel, Vocab
from heedls.server.providers.retrieval import LineIndex, lookup

log = logging.getLogger("heedls.local")

INDEX_VERSION = 1
SKIP_DIRS = frozenset(
    {
        ".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", "env", ".env", ".tox",
        ".nox", "site-packages", "dist-packages", "build", "dist", ".mypy_cache", ".pytest_cache",
        ".ruff_cache", ".eggs", ".idea", ".vscode",
    }
)
REINDEX_INTERVAL_S = 120.0  # after an edit or a watched-file event, the rebuild waits this long (coalescing)
DISK_CHECK_S = 120.0  # with no event, the disk is looked at this often (a client that reports no watched files)
CONTEXT_LINES = 60  # lines of tokens the n-gram context may reach back into
CACHE_LINES = 2000  # the cache component: at most this many lines before the cursor
# Below this calibrated confidence nothing is returned: on held-out code (bench seed 1) it hides
# 37 % of the suggestions while losing 0.5 % of the exact ones. The acceptance gate can be
# stricter; this only cuts what is almost never right.
MIN_CONFIDENCE = 0.05
PARTIAL_MIN_PROB = 0.5  # a shared line start is offered when the lines sharing it are this likely
JEDI_WHEN_BELOW = 0.5  # jedi is consulted when the best other candidate is less confident
BLOCK_LINE_MIN_PROB = 0.6  # a block's first line is appended when the model is this sure of it
JEDI_MAX_CHARS = 500_000
# A document is tokenized ahead of its requests when it is opened or changed (prime): its first
# PRIME_MAX_LINES lines, on the event loop in slices of PRIME_SLICE_S with a pause of PRIME_PAUSE_S
# after each, after edits once typing has paused for PRIME_DELAY_S. The pause leaves the
# interpreter to the server's other threads (stdin is read on one, diagnostics run on others):
# measured over the stdio server on a busy host, with no pause (sleep(0)) a request sent 50 ms after
# didOpen was answered in p50 103-105 ms, against 42-52 ms unprimed (docs/local-provider.md).
# Priming is idle-time work: the pause goes on (doubling, up to PRIME_MAX_PAUSE_S) while a
# completion request is in flight, or while the process's other work used more than
# PRIME_BUSY_SHARE of a CPU during it; priming starts with such a pause. Measured (timestamps in
# the server), what made a request sent 0-100 ms after didOpen slower on a busy host was not the
# slices it waited for (5-12 ms in all) but its arrival: the stdin reader, the didOpen's diagnostics
# threads and priming contending for the interpreter took the request's read and dispatch from
# p50 32-79 ms (priming off) to 45-188 ms (docs/local-provider.md, "Priming").
PRIME_MAX_LINES = 10_000
PRIME_SLICE_S = 0.002
PRIME_PAUSE_S = 0.002
PRIME_MAX_PAUSE_S = 0.064
PRIME_BUSY_SHARE = 0.1
PRIME_DELAY_S = 0.3
SKIPPED_NAMED = 3  # unreadable paths named in the build's log line (a /proc walk meets hundreds)
JEDI_RAW = 0.15  # an unambiguous jedi name is rarely the whole rest of the line (6 cases on seed 1)
_LONE_CR = re.compile(r"\r(?!\n)")
_IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@dataclass
class IndexLimits:
    max_files: int = 3000
    max_file_bytes: int = 1_000_000
    max_tokens: int = 2_000_000  # the suffix arrays ~64 MB at the cap; the process ~400-650 MB (docs)
    max_entries: int = 200_000  # directory entries looked at while walking


def release_free_memory() -> bool:
    """Give the memory the C allocator holds free back to the system (glibc's `malloc_trim`);
    whether it could. A rebuild makes a whole index next to the one in use, then drops the old one:
    the freed arrays (and the suffix sort's temporaries) stayed in glibc's arenas, so the server's
    RSS grew by tens of MB at every rebuild (every two minutes of typing). Elsewhere (musl,
    macOS, Windows) nothing is done."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)  # a ctypes call: the interpreter lock is let go meanwhile
    return True


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        import ctypes

        found: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return found


@dataclass
class _Index:
    vocab: Vocab
    model: NgramModel
    lines: LineIndex
    fids: dict[str, int]
    files: int
    tokens: int
    built_s: float
    # The workspace folders the index was built over (resolved, as strings): a file's group is the
    # position of its (innermost) folder here. Groups are used only when there are two folders or more.
    folders: tuple[str, ...] = ()

    def group_of(self, key: str) -> int | None:
        """The group of the file `key` (a resolved path): its folder's position, None when it is
        in no folder or the workspace has one folder (nothing to prefer)."""
        if len(self.folders) < 2 or not key:
            return None
        return _group_of(key, self.folders)


def _group_of(key: str, folders: tuple[str, ...]) -> int | None:
    best: int | None = None
    for i, folder in enumerate(folders):
        if (key.startswith(folder) and key[len(folder):len(folder) + 1] in (os.sep, "")
                and (best is None or len(folder) > len(folders[best]))):
            best = i
    return best


@dataclass
class _FileEntry:
    size: int
    mtime_ns: int
    digest: str
    tokens: list[str]
    lines: list[str]


@dataclass
class _DocMemo:
    """Per document: incremental tokens, their ids in the current vocabulary, the cache model."""

    doc: DocTokens = field(default_factory=DocTokens)
    vocab: Vocab | None = None
    ids: list[list[int]] = field(default_factory=list)
    cache: CacheModel | None = None
    # The document's lines tokenized ahead of the requests (prime): (state before, line) ->
    # (tokens, state after, ids in primed_vocab or None). Keyed by content, so never stale.
    primed: dict[tuple[LineState, str], tuple[list[str], LineState, list[int] | None]] = field(default_factory=dict)
    primed_vocab: Vocab | None = None


Snapshot = dict[str, tuple[int, int]]  # path -> (size, mtime_ns), in walk order


def _skip(skipped: list[str] | None, path: str | Path, error: OSError | RuntimeError) -> None:
    """Note in `skipped` a path the index leaves out because it cannot be read. One that is gone
    (deleted during the walk, a dangling link) is not unreadable: it is left out unnamed."""
    if skipped is not None and not isinstance(error, FileNotFoundError):
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        skipped.append(f"{path} ({reason})")


def _walked_into(dirpath: str, name: str, skipped: list[str] | None) -> bool:
    """Whether the walk goes into the folder `name`: not an environment, VCS or build folder, nor
    one it cannot look into (a folder without permission, another user's process in /proc)."""
    if name in SKIP_DIRS or name.startswith("."):
        return False
    folder = Path(dirpath, name)
    try:
        return not (folder / "pyvenv.cfg").exists()
    except OSError as error:  # Path.exists() raises all but "no such file" (EACCES in Python 3.11)
        _skip(skipped, folder, error)
        return False


def _resolved(path: Path) -> Path:
    """`path.resolve()`, or `path` itself when it cannot be (a symlink loop raises RuntimeError on
    Python 3.11, a folder without permission OSError). It touches the disk: only for a path not
    plainly inside a folder as given."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path


def python_files(root: Path, limits: IndexLimits, skipped: list[str] | None = None) -> Snapshot:
    """The workspace's .py files, skipping environments, VCS and build folders, bounded in count,
    each with its size and mtime as the walk found them (what tells a changed file without
    reading it). A folder or file that cannot be looked at is left out (named in `skipped`); the
    rest of the walk goes on."""
    out: Snapshot = {}
    seen = 0

    def unreadable(error: OSError) -> None:
        _skip(skipped, error.filename, error)

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        seen += len(dirnames) + len(filenames)
        if seen > limits.max_entries:
            break  # a home directory opened as a workspace must not be walked whole
        # Prune in place so os.walk never descends into virtualenvs or VCS folders.
        dirnames[:] = sorted(d for d in dirnames if _walked_into(dirpath, d, skipped))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = Path(dirpath, name)
            try:
                st = path.stat()
            except OSError as error:
                _skip(skipped, path, error)
                continue
            # A regular file only: a FIFO named x.py hung the index build, a link to /dev/zero grew it
            # until memory ran out (stat() gives both a size of 0)
            if not stat.S_ISREG(st.st_mode) or st.st_size > limits.max_file_bytes:
                continue
            out[str(path)] = (st.st_size, st.st_mtime_ns)
            if len(out) >= limits.max_files:
                return out
    return out


def workspace_files(folders: list[Path], limits: IndexLimits, skipped: list[str] | None = None) -> Snapshot:
    """The .py files of every workspace folder (a multi-root workspace), within the limits of one
    workspace, shared fairly: each folder is walked with an equal share of the directory entries,
    the file count is shared out so that a folder with fewer files than its share leaves the rest
    to the others (one huge folder cannot starve a small one), and the files come in turns, one of
    each folder, so that the index's token cap too cuts every folder alike. A file reached through
    two folders (one nested in the other) counts once. What cannot be read is named in `skipped`."""
    if len(folders) <= 1:
        return python_files(folders[0], limits, skipped) if folders else {}
    share = replace(limits, max_entries=max(1, limits.max_entries // len(folders)))
    walks = [list(python_files(folder, share, skipped).items()) for folder in folders]
    # Water-filling: the smallest folders take all they have, the rest split what is left evenly.
    allowed = [0] * len(walks)
    left = limits.max_files
    order = sorted(range(len(walks)), key=lambda i: len(walks[i]))
    for rank, i in enumerate(order):
        allowed[i] = min(len(walks[i]), left // (len(order) - rank))
        left -= allowed[i]
    out: Snapshot = {}
    for turn in range(max(allowed, default=0)):
        for i, walk in enumerate(walks):
            if turn < allowed[i]:
                path, stamp = walk[turn]
                out.setdefault(path, stamp)
    return out


class LocalProvider:
    """The embedded default provider (see the module docstring)."""

    name = "local"

    def __init__(
        self,
        workspace: Path | None,
        cache_dir: Path | None = None,
        *,
        limits: IndexLimits | None = None,
        use_jedi: bool = True,
        min_confidence: float = MIN_CONFIDENCE,
        budget_s: float = 0.045,
        jedi_share: float = 0.0,
        threaded: bool = False,
        block_lines: bool = False,
        folders: Iterable[Path] | None = None,
    ) -> None:
        self.workspace = Path(workspace).resolve() if workspace else None
        # Every folder of a multi-root workspace is indexed (`workspace` alone by default); the
        # workspace stays the one jedi's project and the persisted index are named after.
        self.folders: list[Path] = []
        self._set_folders(folders)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.limits = limits or IndexLimits()
        self.min_confidence = min_confidence
        # The provider's own latency budget; a caller's larger deadline doesn't make it slower.
        self.budget_s = budget_s
        # Share of the budget a request waits for jedi before the n-gram model runs (default 0:
        # jedi runs in parallel and is used if it answered by the time the n-gram model is done;
        # a late answer serves the next keystrokes of the same name).
        self.jedi_share = jedi_share
        # Run the model inline (default) or on a worker thread. The work is bounded by budget_s
        # either way (a few ms of CPU typically); on the busy 2-core bench machine the thread
        # hand-off cost more than it saved (p50 16-32 ms threaded vs 3.5-4 ms inline, same p95),
        # and with a short deadline the threaded path also lost results to timeouts.
        self.threaded = threaded
        # After a line ending with ':' also suggest the block's first line when it is likely. Off
        # by default: on held-out code (bench seed 1) it changed characters saved by < 0.1 % for
        # 15 % more CPU per request.
        self.block_lines = block_lines
        self._index: _Index | None = None
        self._open_docs: dict[str, str] = {}
        self._dirty = threading.Event()
        self._wake = threading.Event()  # ends the spacing between rebuilds (new folders, closing)
        self._closed = threading.Event()
        self._indexer: threading.Thread | None = None
        self._index_lock = threading.Lock()
        self._cpu = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="heedls-local")
        self._jedi = JediSource(self.workspace, self.folders) if use_jedi else None
        self._memo: dict[str, _DocMemo] = {}
        self._priming: dict[str, asyncio.Task[None]] = {}
        self._requests = 0  # completion requests in flight: priming waits for them
        self._file_cache: dict[str, _FileEntry] = {}
        self._disk: Snapshot | None = None  # the workspace's .py files as the last build found them
        self._skipped: tuple[str, ...] = ()  # the unreadable paths the last build left out

    # -- documents and indexing ---------------------------------------------------------------
    def update_document(self, path: str, text: str) -> None:
        """An open buffer changed: it overrides the disk copy at the next (background) re-index,
        and it is tokenized ahead of its requests (at once when it is new, else once typing pauses)."""
        key = str(Path(path).resolve()) if path else path
        new = key not in self._open_docs
        self._open_docs[key] = text
        self._dirty.set()
        self._schedule_prime(path, text, 0.0 if new else PRIME_DELAY_S)

    def close_document(self, path: str) -> None:
        self._open_docs.pop(str(Path(path).resolve()) if path else path, None)
        task = self._priming.pop(path, None)
        if task is not None:
            task.cancel()
        memo = self._memo.get(path)
        if memo is not None:
            memo.primed, memo.primed_vocab = {}, None

    def _schedule_prime(self, path: str, text: str, delay_s: float) -> None:
        """Tokenize `text` off the request path, so that a file's first request does not spend its
        budget tokenizing thousands of lines (it answered nothing). A newer text of the same
        document cancels the pass under way. Needs a running event loop (the server's): a
        synchronous caller (the benchmark) gets none, its requests tokenize as they go."""
        if not path or self._closed.is_set():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        old = self._priming.pop(path, None)
        if old is not None:
            old.cancel()
        task = loop.create_task(self._prime(path, text, delay_s))
        self._priming[path] = task

        def done(finished: asyncio.Task[None]) -> None:
            if self._priming.get(path) is finished:
                del self._priming[path]

        task.add_done_callback(done)

    def priming(self, path: str) -> bool:
        """Whether the document at `path` is still being tokenized ahead of its requests."""
        return path in self._priming

    async def _prime(self, path: str, text: str, delay_s: float) -> None:
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        await self._prime_pause()  # the rest of the didOpen's work (its diagnostics) goes first
        if self._closed.is_set():
            return
        if _has_lone_cr(text):
            text = _cr_to_lf(text)
        lines = text.split("\n", PRIME_MAX_LINES)[:PRIME_MAX_LINES]
        memo = self._doc_memo(path)
        # The ids too, in the index's vocabulary (a threaded request may add to it meanwhile: not then)
        vocab = self._index.vocab if self._index is not None and not self.threaded else None
        old, old_vocab = memo.primed, memo.primed_vocab
        memo.primed, memo.primed_vocab = {}, vocab  # filled as it goes: a request meanwhile uses what is done
        primed = memo.primed
        state = START
        slice_start = time.perf_counter()
        for line in lines:
            key = (state, line)
            hit = old.get(key)
            if hit is not None:
                toks, after, ids = hit
                ids = ids if old_vocab is vocab else None
            else:
                toks, after, _ = tokenize_known(line, state, None)
                ids = None
            if ids is None and vocab is not None:
                ids = [vocab.id(tok) for tok in toks]
            primed[key] = (toks, after, ids)
            state = after
            if time.perf_counter() - slice_start >= PRIME_SLICE_S:
                await self._prime_pause()  # the event loop's other work (a request) comes first
                if self._closed.is_set():
                    return
                slice_start = time.perf_counter()

    async def _prime_pause(self) -> None:
        """Between two slices of priming: give the event loop and the interpreter back for as long
        as the server has other work. No slice runs while a completion request is in flight (one
        that awaits: jedi, the threaded model). While the process's other threads (the didOpen's
        diagnostics, jedi, the indexer) or the event loop's other callbacks (a request's handler)
        used more than PRIME_BUSY_SHARE of a CPU during the last pause, the pause doubles, up to
        PRIME_MAX_PAUSE_S; after that one another slice runs (a server that is never idle is
        still primed, slowly)."""
        pause = PRIME_PAUSE_S
        while True:
            wall, cpu = time.perf_counter(), time.process_time()
            await asyncio.sleep(pause)
            busy = time.process_time() - cpu >= PRIME_BUSY_SHARE * (time.perf_counter() - wall)
            if self._closed.is_set():
                return
            if self._requests:
                pause = PRIME_PAUSE_S  # looked at again every pause until the request is answered
            elif not busy or pause >= PRIME_MAX_PAUSE_S:
                return
            else:
                pause = min(2 * pause, PRIME_MAX_PAUSE_S)

    def _set_folders(self, folders: Iterable[Path] | None) -> bool:
        resolved = list(dict.fromkeys(Path(folder).resolve() for folder in folders or []))
        if not resolved and self.workspace is not None:
            resolved = [self.workspace]  # no folder given (or all removed): the workspace alone
        if self.workspace is None and resolved:
            self.workspace = resolved[0]
        changed = resolved != self.folders
        self.folders = resolved
        return changed

    def set_folders(self, folders: Iterable[Path]) -> None:
        """The workspace folders changed (a multi-root workspace, a folder added or removed): the
        index covers the .py files of every one, rebuilt at once (not after the usual spacing)
        when the set changed."""
        if self._set_folders(folders):
            self._dirty.set()
            self._wake.set()
        if self._jedi is not None:
            self._jedi.folders = list(self.folders)

    def _in_folders(self, path: Path) -> bool:
        return any(path.is_relative_to(folder) for folder in self.folders)

    def files_changed(self, paths: Iterable[str]) -> None:
        """Files changed on disk (the client's watched-file events: a git checkout, a formatter, a
        new or deleted module): the next rebuild, spaced as after an edit, re-reads them. Only
        .py files in a workspace folder count."""
        if not self.folders:
            return
        for path in paths:
            if not path.endswith(".py"):
                continue
            candidate = Path(path)
            if self._in_folders(candidate) or self._in_folders(_resolved(candidate)):
                self._dirty.set()
                return

    def start_indexing(self) -> None:
        """Index the workspace on a daemon thread, then re-index (at most every 2 min) after changes."""
        self.warm_up()
        if not self.folders or self._indexer is not None:
            return
        self._indexer = threading.Thread(target=self._index_loop, name="heedls-local-index", daemon=True)
        self._indexer.start()

    def warm_up(self) -> None:
        """Start the jedi worker now (start_indexing does), so no request pays for starting it."""
        if self._jedi is not None:
            self._jedi.warm_up()

    def _index_loop(self) -> None:
        while not self._closed.is_set():
            self._dirty.clear()
            self._wake.clear()
            try:
                self.index_now()
            except Exception:
                log.exception("local index build failed")
            release_free_memory()  # what the previous index and the build's temporaries left free
            # An edited buffer or a watched-file event sets _dirty. Without one the disk is looked
            # at every DISK_CHECK_S: a client that reports no watched files still gets a git
            # checkout or a formatter run into the index.
            checked = time.monotonic()
            on_disk = False
            while not self._closed.is_set() and not self._dirty.wait(timeout=1.0):
                if time.monotonic() - checked >= DISK_CHECK_S:
                    on_disk = self._disk_changed()
                    if on_disk:
                        break
                    checked = time.monotonic()
            if not on_disk:
                # Rebuilds are whole (tokens are cached per file, the suffix array is not), so they
                # are spaced out: edits to the current file never need one (its prefix is the cache),
                # and a burst of events (a checkout) makes one rebuild. A change found on disk has
                # waited for the check already. A change of workspace folders does not wait.
                self._wake.wait(timeout=REINDEX_INTERVAL_S)

    def _disk_changed(self) -> bool:
        """Whether the workspace's .py files (every folder's) differ from the last build's: one
        added, removed, or with another size or mtime (a walk and a stat per file; nothing is read)."""
        if not self.folders or self._disk is None:
            return False
        try:
            return workspace_files(self.folders, self.limits) != self._disk
        except OSError:
            return False

    @property
    def indexed(self) -> bool:
        return self._index is not None

    def index_stats(self) -> dict[str, float]:
        idx = self._index
        if idx is None:
            return {"files": 0, "tokens": 0, "built_s": 0.0}
        return {"files": idx.files, "tokens": idx.tokens, "built_s": idx.built_s}

    def _store_path(self) -> Path | None:
        if self.cache_dir is None or self.workspace is None:
            return None
        digest = hashlib.sha1(str(self.workspace).encode()).hexdigest()[:16]
        return self.cache_dir / f"local-index-v{INDEX_VERSION}-{digest}.marshal"

    def _load_store(self) -> None:
        store = self._store_path()
        if store is None or self._file_cache:
            return
        try:
            if not store.exists():  # inside: it raises when the cache folder cannot be looked into
                return
            data = marshal.loads(store.read_bytes())
            if data.get("version") != INDEX_VERSION:
                return
            for path, (size, mtime, digest, toks, lines) in data["files"].items():
                self._file_cache[path] = _FileEntry(size, mtime, digest, list(toks), list(lines))
        except Exception:  # noqa: BLE001 - a corrupt cache is just a cold start
            log.warning("local index cache unreadable; rebuilding")
            self._file_cache = {}

    def _save_store(self, keep: set[str]) -> None:
        store = self._store_path()
        if store is None:
            return
        data = {
            "version": INDEX_VERSION,
            "files": {
                p: (e.size, e.mtime_ns, e.digest, tuple(e.tokens), tuple(e.lines))
                for p, e in self._file_cache.items()
                if p in keep
            },
        }
        try:
            store.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(store, marshal.dumps(data))  # two servers on one workspace never share a temporary file
        except OSError as exc:
            log.warning("cannot persist local index: %s", exc)

    def _entry(self, path: Path, skipped: list[str] | None = None) -> _FileEntry | None:
        key = str(path)
        try:
            st = path.stat()
        except OSError as error:
            _skip(skipped, path, error)
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        cached = self._file_cache.get(key)
        if cached and cached.size == st.st_size and cached.mtime_ns == st.st_mtime_ns:
            return cached
        try:
            with open(path, "rb") as fh:  # no more than the cap, even if the file grew since the walk
                raw = fh.read(self.limits.max_file_bytes + 1)
        except OSError as error:
            _skip(skipped, path, error)
            return None
        if len(raw) > self.limits.max_file_bytes:
            return None
        digest = hashlib.sha1(raw).hexdigest()
        if cached and cached.digest == digest:
            cached.size, cached.mtime_ns = st.st_size, st.st_mtime_ns
            return cached
        text = raw.decode("utf-8", "replace")
        entry = _FileEntry(st.st_size, st.st_mtime_ns, digest, tokenize_source(text), text.splitlines())
        self._file_cache[key] = entry
        return entry

    def index_now(self, files: list[Path] | None = None) -> None:
        """Build the workspace index synchronously (the background thread and the benchmark call this)."""
        with self._index_lock:
            started = time.perf_counter()
            self._load_store()
            skipped: list[str] = []
            if files is None:
                # the walk's sizes and mtimes, taken before reading: a file changed during the build
                # differs at the next check
                self._disk = workspace_files(self.folders, self.limits, skipped)
                paths = [Path(path) for path in self._disk]
            else:
                paths = files
            token_files: list[tuple[str, list[str]]] = []
            line_files: list[tuple[int, list[str]]] = []
            fids: dict[str, int] = {}
            total = 0
            for path in paths:
                if self._closed.is_set():
                    return
                try:
                    key = str(path.resolve())
                except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop (Python 3.11)
                    _skip(skipped, path, error)
                    continue
                text = self._open_docs.get(key)
                if text is not None and len(text) > self.limits.max_file_bytes:
                    text = None  # a buffer above the cap is no more indexed than such a file (disk rule below)
                if text is not None:
                    toks, lines = tokenize_source(text), text.splitlines()
                else:
                    entry = self._entry(Path(key), skipped)
                    if entry is None:
                        continue
                    toks, lines = entry.tokens, entry.lines
                if total + len(toks) > self.limits.max_tokens:
                    break
                total += len(toks)
                fids[key] = len(fids)
                token_files.append((key, toks))
                line_files.append((fids[key], lines))
            vocab = Vocab()
            folders = tuple(str(folder) for folder in self.folders)
            groups: dict[int, int] | None = None
            if len(folders) > 1:  # the file's own folder is preferred (see _Index.group_of)
                groups = {fid: g for key, fid in fids.items() if (g := _group_of(key, folders)) is not None}
            model = NgramModel(vocab, GlobalModel(vocab, token_files,
                                                  [groups.get(fids[key], -1) for key, _ in token_files]
                                                  if groups else None))
            self._index = _Index(
                vocab=vocab,
                model=model,
                lines=LineIndex(line_files, groups),
                fids=fids,
                files=len(fids),
                tokens=total,
                built_s=time.perf_counter() - started,
                folders=folders,
            )
            if files is None:
                # Only the files of this build stay tokenized in memory, as on disk (_save_store):
                # those of a removed workspace folder, or deleted, were kept for the server's life.
                self._file_cache = {key: entry for key, entry in self._file_cache.items() if key in fids}
            self._save_store(set(fids))
            self._report_skipped(skipped)
            log.info("local index: %d files, %d tokens in %.2fs", len(fids), total, self._index.built_s)

    def _report_skipped(self, skipped: list[str]) -> None:
        """One log line naming the unreadable paths a build left out (the first SKIPPED_NAMED), and
        only when they differ from the last build's: rebuilds come every two minutes of typing."""
        found = tuple(dict.fromkeys(skipped))
        if found and found != self._skipped:
            more = len(found) - SKIPPED_NAMED
            named = ", ".join(found[:SKIPPED_NAMED]) + (f" and {more} more" if more > 0 else "")
            log.warning("local index: skipped %d unreadable path(s): %s", len(found), named)
        self._skipped = found

    # -- completion -------------------------------------------------------------------------
    async def complete(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
        if self._closed.is_set() or _before_a_word(request.suffix):
            return []
        self._requests += 1  # priming pauses at its next slice boundary until the request is done
        try:
            return await self._complete(request, deadline_s)
        finally:
            self._requests -= 1

    async def _complete(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
        budget = max(0.0, min(deadline_s, self.budget_s))
        started = time.perf_counter()
        request = _lf_line_ends(request)
        loop = asyncio.get_running_loop()
        # Only the cursor line is needed to decide whether jedi can help.
        line_ctx = cursor_context(request.prefix[request.prefix.rfind("\n") + 1 :])
        names: list[NameCompletion] | None = None
        jedi_args: tuple[str, str, int, int] | None = None
        typed = "" if line_ctx.pending.strip() == "." else line_ctx.pending.strip()
        if self._jedi is not None and _wants_names(line_ctx.pending, line_ctx.tokens[-1:]):
            # Ask jedi at the *start* of the name being typed and filter locally: the answer is
            # then the same for every keystroke of the name, so a late result is reused.
            full = _full_prefix(request)
            head = full[: len(full) - len(typed)]
            tail = ""
            if request.document is not None and request.document.startswith(full):
                tail = request.document[len(full):]
            jedi_args = (head + tail, request.path, request.line + 1, request.character - len(typed))
            if len(jedi_args[0]) > JEDI_MAX_CHARS:
                jedi_args = None  # jedi on a multi-megabyte module is too slow to ever be useful
            elif self.jedi_share > 0:
                found = await self._jedi.complete(*jedi_args, timeout_s=budget * self.jedi_share)
            else:
                found = self._jedi.cached(*jedi_args)
            names = _filter_names(found, typed) if jedi_args is not None else None
        remaining = budget - (time.perf_counter() - started)
        if self.threaded:
            fut = loop.run_in_executor(self._cpu, self._suggest, request, names, started + budget)
            try:
                out = await asyncio.wait_for(asyncio.shield(fut), max(remaining, 0.005) + 0.01)
            except TimeoutError:
                return []
        else:
            out = self._suggest(request, names, started + budget)
        if names is None and jedi_args is not None and self._jedi is not None:
            top = out[0].confidence or 0.0 if out else 0.0
            if top < JEDI_WHEN_BELOW:
                # The n-gram model is unsure: start jedi now (no waiting); its answer serves the
                # next keystrokes of this name, and this request if it is already there.
                await self._jedi.complete(*jedi_args, timeout_s=0.0)
                late = _filter_names(self._jedi.cached(*jedi_args), typed)
                if late is not None:
                    out = self._with_jedi(out, late, line_ctx.pending, not line_ctx.line_prefix.strip())
        return out

    async def prime(self, request: CompletionRequest, wait_s: float) -> None:
        """For a one-shot caller (`heedls complete`), which has no next keystroke: ask at `request`
        as the server would, then wait up to `wait_s` for the jedi job that started (the server
        uses a late answer from the next keystroke on), so that the next complete() at this place
        answers as the editor would after a keystroke. Nothing is waited for when jedi is not asked."""
        if self._jedi is None or self._closed.is_set():
            return
        deadline = time.perf_counter() + wait_s
        # one job at a time: one still running (a warm-up) would keep this request's from starting
        await self._jedi.idle(wait_s)
        await self.complete(request, self.budget_s)
        await self._jedi.idle(deadline - time.perf_counter())

    def _block_line(
        self, model: NgramModel, ctx: CursorContext, first: list[str], cache: CacheModel,
        exclude: tuple[int, int] | None, until: float, prefer: int | None = None,
    ) -> tuple[str, float] | None:
        """The line opening the block after `first` (a line ending with ':'), when likely enough."""
        if time.perf_counter() >= until:
            return None
        context = ctx.tokens + first[: first.index(EOL) + 1 if EOL in first else len(first)] + [IND]
        gens = model.generate(context[-(MAX_ORDER + 1):], "", cache, exclude, beam=2, until=until, prefer=prefer)
        if not gens or not gens[0].complete or gens[0].prob < BLOCK_LINE_MIN_PROB:
            return None
        text = render(gens[0].tokens, "")
        return (text, gens[0].prob) if text.strip() else None

    def _with_jedi(
        self, out: list[Candidate], names: list[NameCompletion], pending: str, line_start: bool
    ) -> list[Candidate]:
        if len(names) != 1:
            return out
        text = _jedi_text(names[0], pending)
        if not text or any(c.text == text for c in out):
            return out
        raw = JEDI_RAW
        meta: dict[str, object] = {"kind": names[0].kind, "raw": raw}
        conf = confidence("jedi", raw, meta, line_start, text)
        cand = Candidate(text=text, provider=self.name, confidence=round(conf, 4), source="jedi", meta=meta)
        if cand.confidence is not None and cand.confidence < self.min_confidence:
            return out
        merged = out + [cand]
        merged.sort(key=lambda c: -(c.confidence or 0.0))
        return merged

    def _context(
        self, request: CompletionRequest, vocab: Vocab, until: float
    ) -> tuple[CursorContext, CacheModel, list[str]] | None:
        """The cursor context and the cache component (the current file's complete lines before
        the cursor), both maintained incrementally per document: typing re-tokenizes one line.
        None when the deadline came before the document was all tokenized (a file's first request
        of thousands of lines): the work done is kept, the next request goes on from there."""
        memo = self._doc_memo(request.path)
        before = len(memo.doc.lines)
        ctx = cursor_context(_full_prefix(request), max_lines=CONTEXT_LINES, doc=memo.doc, until=until,
                             known=memo.primed or None)
        same = memo.doc.kept
        if memo.vocab is not vocab:
            memo.vocab, memo.ids, memo.cache, same = vocab, [], None, 0
        if memo.cache is None or same < before or len(memo.doc.lines) != before:
            del memo.ids[same:]
            memo.cache = None
        if not memo.doc.done:
            return None
        if memo.cache is None:
            # from len(ids), not `same`: a conversion cut short by the deadline goes on from there
            doc, primed = memo.doc, memo.primed if memo.primed_vocab is vocab else None
            for i in range(len(memo.ids), len(doc.tokens)):
                toks = doc.tokens[i]
                hit = primed.get((doc.states[i - 1] if i else START, doc.lines[i])) if primed else None
                if hit is not None and hit[0] is toks and hit[2] is not None:
                    memo.ids.append(hit[2])  # converted when the document was primed
                    continue
                memo.ids.append([vocab.id(t) for t in toks])
                if time.perf_counter() >= until:
                    break
            if len(memo.ids) < len(memo.doc.tokens):
                return None
            window = memo.ids[-CACHE_LINES:]
            memo.cache = CacheModel([i for line in window for i in line])
        return ctx, memo.cache, memo.doc.lines[-CACHE_LINES:]

    def _doc_memo(self, path: str) -> _DocMemo:
        memo = self._memo.get(path)
        if memo is None:
            if len(self._memo) >= 32:
                self._memo.pop(next(iter(self._memo)))
            memo = self._memo[path] = _DocMemo()
        return memo

    def _suggest(
        self, request: CompletionRequest, names: list[NameCompletion] | None, until: float
    ) -> list[Candidate]:
        idx = self._index
        vocab = idx.vocab if idx else Vocab()
        model = idx.model if idx else NgramModel(vocab, None)
        key = str(Path(request.path).resolve()) if request.path else ""
        fid = idx.fids.get(key) if idx else None
        exclude = model.glob.spans.get(key) if (model.glob is not None and key) else None
        # A multi-root workspace: the file's own folder's code counts more (ties go to it).
        prefer = idx.group_of(key) if idx else None
        context = self._context(request, vocab, until)
        if context is None:
            return []  # out of time before the context was known: nothing rather than a late answer
        ctx, cache, cache_lines = context

        found: dict[str, tuple[float, str, dict[str, object]]] = {}
        line_start = not ctx.line_prefix.strip()

        # What already follows the cursor on its line (an auto-closed bracket, the rest of a line
        # being edited): a suggestion must not type it a second time.
        after = request.suffix.split("\n", 1)[0].rstrip()

        def offer(text: str, raw: float, source: str, meta: dict[str, object]) -> None:
            if after and text.rstrip().endswith(after):
                text = text.rstrip()[: len(text.rstrip()) - len(after)]
            if not text.strip():
                return
            conf = confidence(source, raw, meta, line_start, text)
            meta["raw"] = round(raw, 5)
            prev = found.get(text)
            if prev is None or conf > prev[0]:
                found[text] = (conf, source, meta)

        # Retrieval first: it is cheap and, when it fires, usually right.
        for hit in lookup(idx.lines if idx else None, cache_lines, ctx.line_prefix, ctx.prev_lines, fid,
                          prefer=prefer):
            text = hit.line[len(ctx.line_prefix.lstrip()):]
            offer(text, hit.confidence, "retrieval",
                  {"kind": hit.kind, "support": hit.support, "total": hit.total})

        first_tokens: list[str] = []
        typed = ctx.pending.strip()
        for nc in names or []:
            if typed == ".":
                continue  # attribute names follow the "." token: not a first token
            # The jedi name as a token in the spacing-aware form the n-gram model uses.
            first_tokens.append(ctx.pending[: len(ctx.pending) - len(typed)] + nc.name)

        if time.perf_counter() < until and not _bare_comment(ctx.pending):
            gens = model.generate(
                ctx.tokens[-(MAX_ORDER + 1):], ctx.pending, cache, exclude,
                first_tokens=first_tokens[:20] or None, until=until, prefer=prefer,
            )
            for rank, gen in enumerate(gens):
                text = render(gen.tokens, ctx.pending)
                raw = gen.prob if gen.complete else gen.prob * 0.3
                meta: dict[str, object] = {"order": gen.order, "complete": gen.complete}
                if rank == 0 and self.block_lines and gen.complete and text.rstrip().endswith(":"):
                    body = self._block_line(model, ctx, gen.tokens, cache, exclude, until, prefer)
                    if body is not None:
                        # The block's first line rides along; the confidence stays that of the
                        # first line (the benchmark scores the first line).
                        meta["block_prob"] = round(body[1], 4)
                        offer(text.rstrip() + "\n" + ctx.indent + _indent_unit(cache_lines) + body[0], raw,
                              "ngram", meta)
                        continue
                offer(text, raw, "ngram", meta)
            lines = [g for g in gens if g.complete and render(g.tokens, ctx.pending).strip()][:2]
            shared = _common_token_prefix([g.tokens for g in lines])
            if shared and len(lines) > 1:
                # The lines disagree but all start the same way (a repeated call with new
                # arguments): that start is a safe partial suggestion. Its chance of being the
                # *whole* rest of the line is nil, so it ranks after the full lines.
                text = render(shared, ctx.pending)
                if len(text.strip()) >= 4 and text not in found:
                    # Its confidence is the (calibrated) chance that the line starts this way.
                    raw = sum(g.prob for g in lines)
                    pmeta: dict[str, object] = {"order": gens[0].order, "complete": True, "partial": True,
                                                "raw": round(raw, 5)}
                    found[text] = (-confidence("ngram", raw, pmeta, line_start, text), "ngram", pmeta)

        if len(names or []) == 1:
            assert names is not None
            offer(_jedi_text(names[0], ctx.pending), JEDI_RAW, "jedi", {"kind": names[0].kind})

        for text in [t for t in found if "\n" in t]:
            # A block suggestion supersedes the same first line offered alone (by any source).
            alone = found.pop(text.split("\n", 1)[0], None)
            if alone is not None and alone[0] > found[text][0]:
                found[text] = (alone[0], found[text][1], found[text][2])
        if line_start:
            # A whole line that repeats one of the last lines verbatim is what the pipeline's
            # post-processing drops as a degenerate loop: let the next candidate come first.
            recent = {ln.strip() for ln in cache_lines[-40:] if len(ln.strip()) > 8}
            found = {t: v for t, v in found.items() if t.strip() not in recent}
        # Partial lines carry a negative sort key so they always rank after the full lines; they
        # are returned only as the fallback when no full line is worth showing.
        ranked = sorted(found.items(), key=lambda kv: -kv[1][0])
        full = [(t, c, s, m) for t, (c, s, m) in ranked if c >= 0 and c >= self.min_confidence]
        partial = [(t, -c, s, m) for t, (c, s, m) in ranked if c < 0 and float(m["raw"]) >= PARTIAL_MIN_PROB]  # type: ignore[arg-type]
        chosen = full[:5] if full else partial[:1]
        return [
            Candidate(text=text, provider=self.name, confidence=round(conf, 4), source=source, meta=meta)
            for text, conf, source, meta in chosen
        ]

    async def aclose(self) -> None:
        self._closed.set()
        self._wake.set()
        for task in list(self._priming.values()):
            task.cancel()
        if self._jedi is not None:
            self._jedi.close()
        self._cpu.shutdown(wait=False, cancel_futures=True)


def _indent_unit(lines: list[str]) -> str:
    """The file's indentation step (tabs, or the smallest space indent seen; 4 by default)."""
    widths = [len(ln) - len(ln.lstrip(" ")) for ln in lines[-400:] if ln.startswith(" ") and ln.strip()]
    if any(ln.startswith("\t") for ln in lines[-400:]):
        return "\t"
    return " " * (min(widths) if widths else 4)


def _has_lone_cr(text: str) -> bool:
    # "\r" in text is a fast scan, so LF files pay next to nothing; CRLF files count twice
    return "\r" in text and text.count("\r") != text.count("\r\n")


def _lf_line_ends(request: CompletionRequest) -> CompletionRequest:
    """`request` with its lone \r line ends (old Mac files) made \n: LSP positions end a line at
    \r, \n or \r\n, but the context, the cache and retrieval split lines at \n, so a CR-only file
    was one long line and got no suggestions. One character for one: offsets and columns stay
    valid. LF and CRLF text is returned as it is (the same object)."""
    texts = (request.prefix, request.suffix, request.document or "")
    if not any(_has_lone_cr(t) for t in texts):
        return request
    document = request.document
    return replace(
        request,
        prefix=_cr_to_lf(request.prefix),
        suffix=_cr_to_lf(request.suffix),
        document=_cr_to_lf(document) if document is not None else None,
    )


def _cr_to_lf(text: str) -> str:
    # str.replace when there is no CRLF to keep: the regex took ~50 ms on a 5 MB CR-only file
    return text.replace("\r", "\n") if "\r\n" not in text else _LONE_CR.sub("\n", text)


def _full_prefix(request: CompletionRequest) -> str:
    """The whole text before the cursor: callers truncate `prefix` (a few thousand characters),
    but the cache component wants the whole file above the cursor when the document is given."""
    doc: str | None = request.document
    prefix: str = request.prefix
    if doc is None or len(doc) <= len(prefix):
        return prefix
    # Where the prefix last occurs, checked to end at the cursor's line and column, is the answer
    # of the walk below in C-speed searches: walking a 250,000-line file's lines took 50-75 ms.
    found = doc.rfind(prefix)
    if found >= 0:
        pos = found + len(prefix) - request.character  # the start of the cursor line, if it is
        if request.line == 0:
            line_start = pos == 0
        else:
            line_start = 0 < pos and doc[pos - 1] == "\n" and doc.count("\n", 0, pos) == request.line
        if line_start:
            return doc[: pos + request.character]
    pos = 0
    for _ in range(request.line):
        pos = doc.find("\n", pos) + 1
        if pos == 0:
            return prefix
    full = doc[: pos + request.character]
    return full if full.endswith(prefix) else prefix


def _common_token_prefix(seqs: list[list[str]]) -> list[str]:
    if not seqs:
        return []
    out: list[str] = []
    for column in zip(*seqs):
        if any(tok != column[0] for tok in column):
            break
        out.append(column[0])
    return out


def _filter_names(found: list[NameCompletion] | None, typed: str) -> list[NameCompletion] | None:
    if found is None:
        return None
    return [nc for nc in found if nc.name.startswith(typed) and nc.name != typed]


def _jedi_text(nc: NameCompletion, pending: str) -> str:
    """The rest of the name, and the call's open paren when it is a function or class."""
    typed = pending.strip()
    rest: str = nc.name if typed == "." else nc.name[len(typed) :]
    return rest + ("(" if nc.kind in ("function", "class") else "")


def _before_a_word(suffix: str) -> bool:
    """Is the cursor right before a word (`httpx.Cli|ent()`, `f(|x)`)? The n-gram model does not
    see the suffix, so whatever it offers there would retype the word or push it aside
    (`Cli` + `ent(transport=...` + `ent()`); editors' assistants stay quiet there too."""
    return bool(suffix) and (suffix[0].isalnum() or suffix[0] == "_")


# Characters of a comment's text typed before the n-gram model completes it: after a bare `# `
# every comment of the workspace is a candidate, and its most frequent one is no guess.
COMMENT_MIN_TYPED = 4


def _bare_comment(pending: str) -> bool:
    """Is the token being typed a comment with fewer than COMMENT_MIN_TYPED characters of text?"""
    body = pending.lstrip()
    return body.startswith("#") and len(body[1:].strip()) < COMMENT_MIN_TYPED


def _wants_names(pending: str, before: list[str]) -> bool:
    """Jedi helps while an *attribute* is being typed (`os.pa`, or just after the dot): plain
    names are what the cache and workspace models already know, attributes of installed libraries
    are not. Limiting jedi to attributes halves its jobs, and its CPU use competes with requests."""
    p = pending.strip()
    if p == ".":
        return True
    return bool(p) and p[0] in _IDENT_CHARS and not p[0].isdigit() and before == ["."]
