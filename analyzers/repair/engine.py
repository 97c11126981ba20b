"""The repair loop: baseline run → localisation → candidates → parallel validation → ranked fixes.

Only plausible fixes are returned: with the candidate in place (in a temporary copy), the tests
that failed now pass and the tests that passed still pass. The best one is re-checked in a fresh
`python -m pytest` subprocess before it is offered, so the fork-server's speed never buys a wrong
answer.
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import heapq
import itertools
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from heedls.analyzers import proc, pyparse
from heedls.analyzers.check import find_workspace
from heedls.analyzers.patches import unified_diff
from heedls.analyzers.repair import error_guided, operators, ruff_fixes, syntax_fix
from heedls.analyzers.repair.edits import Candidate, change_size, normalised
from heedls.analyzers.repair.localize import LineScore, localise
from heedls.analyzers.repair.naturalness import introduced_smells, smells
from heedls.analyzers.repair.tidy import drop_redundant_parens
from heedls.analyzers.repair.workers import (
    CHECK_MEMORY_BYTES,
    PROFILER,
    RunResult,
    TestOutcome,
    Worker,
    WorkerError,
    copy_workspace,
    find_python,
    note_unprotected,
    sandbox_env,
    sandbox_limits,
    site_folders,
    workspace_fingerprint,
)

log = logging.getLogger("heedls.repair")

Progress = Callable[[str, float], None]

# outcome cache: content hash of (module text, test files, the other files' stats, interpreter) -> plausible?
_CACHE: dict[str, bool] = {}
_CACHE_MAX = 20000
# The baseline's per-test watchdog: the hang of a buggy module shows at once. The tests it cuts get
# a second run with between these many seconds each (a tenth of the budget), to tell slow from hung.
BASELINE_TEST_LIMIT_S = 0.6
# The failure the runner gives the test a run ended in (os._exit(), a signal, the run's deadline);
# the runner, stdlib-only and run as a script, writes the same string (`_ended_in`).
RUN_ENDED = "TestRunEnded"
SLOW_TEST_LIMIT_S = (1.5, 10.0)
# The failing tests run this many more times on the original before the search: one that passes is flaky.
REPRODUCE_RUNS = 2


@dataclass
class RepairRequest:
    module: Path
    tests: list[Path]
    root: Path | None = None
    budget_s: float = 60.0
    jobs: int = 0
    python: str = ""
    chat: Any = None  # object with async chat(messages, *, max_tokens, temperature, n, deadline_s)
    llm_samples: int = 3
    llm_rounds: int = 2
    autoload_plugins: bool = False
    max_plausible: int = 3
    confirm: bool = True
    focus_line: int | None = None  # 1-based; editors ask about a position
    source: str | None = None  # the editor's unsaved text of the module (None = read the file)


@dataclass
class PlausibleFix:
    new_text: str
    patch: str
    operator: str
    description: str
    line: int
    score: float
    size: int
    source: str
    found_after_s: float
    confirmed: bool = False
    smells: int = 0  # lint-like findings the fix adds (naturalness.py): a variable left unread, `y - y`, …
    changed_calls: int = 0  # calls whose tests the original passed that the fix makes behave otherwise
    unfinished: list[str] = field(default_factory=list)  # set-aside slow tests still running past their limit
    # its place in the search order (1: the first candidate taken); `candidates_tried` also counts
    # what the other workers took meanwhile and what the search tried after it for a smaller fix
    taken_as: int = 0


FIXUP_RESERVE_SHARE = 0.1
PROFILE_LEAVES_S = 1.0  # the behaviour profile leaves this much of the budget to the fresh-process check
PROFILE_MIN_S = 0.5  # and is not started with less than this
PROFILE_SUITE_FACTOR = 1.5  # nor with less than this many times the suite's (traced) time in the baseline
CONFIRM_HASH_SEEDS = ("1", "2")  # the fresh-process check's PYTHONHASHSEEDs (the search's is 0)


@dataclass
class RepairResult:
    fixed: bool
    patch: str
    candidates_tried: int
    test_runs: int
    seconds: float
    explanation: str
    status: str  # fixed | no-failing-tests | not-found | cancelled | error
    fixes: list[PlausibleFix] = field(default_factory=list)
    first_plausible_s: float | None = None
    operator: str | None = None
    failing_tests: list[str] = field(default_factory=list)
    suspicious_lines: list[LineScore] = field(default_factory=list)
    new_text: str | None = None
    module: str = ""
    set_aside: list[str] = field(default_factory=list)  # see Repairer.set_aside

    def to_json(self) -> dict[str, Any]:
        return {
            "fixed": self.fixed,
            "patch": self.patch,
            "candidates_tried": self.candidates_tried,
            "test_runs": self.test_runs,
            "seconds": round(self.seconds, 3),
            "explanation": self.explanation,
            "status": self.status,
            "operator": self.operator,
            "first_plausible_s": None if self.first_plausible_s is None else round(self.first_plausible_s, 3),
            "failing_tests": self.failing_tests,
            "slow_tests_set_aside": self.set_aside,
            # false: offered without the fresh-process check (the budget ran out first, or it was off)
            "confirmed": self.fixes[0].confirmed if self.fixed and self.fixes else None,
            "alternatives": [
                {"operator": f.operator, "description": f.description, "line": f.line, "patch": f.patch}
                for f in self.fixes[1:]
            ],
        }


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


class _Queue:
    """Priority queue shared by the worker threads; LLM candidates can be pushed at any time."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Candidate]] = []
        self._count = itertools.count()
        self._lock = threading.Lock()

    def push(self, cand: Candidate) -> None:
        with self._lock:
            heapq.heappush(self._heap, (-cand.score, next(self._count), cand))

    def pop(self) -> Candidate | None:
        with self._lock:
            if not self._heap:
                return None
            return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)


class Repairer:
    def __init__(self, req: RepairRequest, cancel: threading.Event | None = None, progress: Progress | None = None) -> None:
        self.req = req
        self.cancel = cancel or threading.Event()
        # pytest plugins are off in runs (speed, no side effects) unless asked for, or unless the
        # tests turn out to need them (async tests: pytest-asyncio, anyio)
        self.autoload = req.autoload_plugins
        self.progress = progress or (lambda message, fraction: None)
        self.start = time.monotonic()
        self.deadline = self.start + req.budget_s
        self.module = req.module.resolve()
        self.tests = [t.resolve() for t in req.tests]
        # The project they belong to (its conftest.py and configuration are part of a test run):
        # the nearest folder above both with a project marker, as `heedls check` finds it.
        common = Path(os.path.commonpath([self.module.parent, *[t.parent for t in self.tests]]))
        self.root = (req.root or find_workspace([common])).resolve()
        self.rel_module = str(self.module.relative_to(self.root))
        self.rel_tests = [str(t.relative_to(self.root)) for t in self.tests]
        self.python = find_python(self.root, req.python)
        original = req.source if req.source is not None else self.module.read_text(encoding="utf-8")
        # A byte-order mark is no Python (compile() of a str rejects U+FEFF, so no candidate parsed):
        # the search runs without it and the fix keeps it.
        self.bom = "\ufeff" if original.startswith("\ufeff") else ""
        self.original = original[len(self.bom):]
        self.test_texts = [t.read_text(encoding="utf-8", errors="replace") for t in self.tests]
        # set as the runners' copies are made (`_run`); until then no verdict is shared with another search
        self.tests_digest = secrets.token_hex(16)
        self.site: list[str] = []
        self._support: list[Path] | None = None  # see `support_files`
        self.workers: list[Worker] = []
        self.lock = threading.Lock()
        self.queue = _Queue()
        self.seen: set[str] = {normalised(self.original) or ""}
        self.plausible: list[PlausibleFix] = []
        self.first_plausible_s: float | None = None
        self.tried = 0
        self.runs = 0
        self.baseline: RunResult | None = None
        self.order: list[str] = []
        self.failing_order: list[str] = []
        self.failing_files: list[str] = []  # the test files (of rel_tests) the failing tests are in
        self.search_start: float | None = None
        self.suite_s = 0.0  # the baseline's time in the tests the search runs
        self.run_timeout = 5.0
        self.floor_timeout = 0.6
        self.test_limit = BASELINE_TEST_LIMIT_S  # per test, where a run has one (raised by _recheck_cut)
        self.cut_limit = BASELINE_TEST_LIMIT_S  # what the tests still cut after _recheck_cut ran past
        # Tests that ran past `cut_limit` on the original while others failed outright: slow (a 20 s
        # test in a real suite) or hung by the bug, no telling which. The search runs without them;
        # a candidate that passes the rest then runs them (`_check_set_aside`).
        self.set_aside: list[str] = []
        self.cut_again: list[str] = []  # of those, the ones _recheck_cut's run did reach (and cut again)
        # passing tests that fail on the fast path only (`_check_fast`): left to the fresh-process check
        self.fast_skip: list[str] = []
        self.durations: list[float] = []
        self.expected_tests = 0
        self.llm_feedback: list[str] = []
        self.llm_pending = 0
        self.stop_after: float | None = None
        self.fast = False
        self.has_pytest = True
        self.tried_singles: list[tuple[int, Candidate]] = []  # (progress, candidate) of failed single edits
        self.second_order_done = False
        self.rejected: list[PlausibleFix] = []  # passed in the search, failed the fresh-process check
        self.confirm_timed_out: float | None = None  # the limit a fresh-process check ran out of
        self.start_s = 0.0  # the slowest runner's start: what a Python and pytest start costs here, now

    # -- helpers -------------------------------------------------------------------------------
    def left(self) -> float:
        return self.deadline - time.monotonic()

    def fixup_reserve(self) -> float:
        """The budget's end kept for the fix-up once a fix is found: a tenth of it, 1-5 s (two fresh
        Python processes, side by side for the check). Without it a fix found late overran the
        budget by the fix-up's time (22 s on a 20 s budget). More for a slow suite: the check
        runs it whole (up to 30 % of the budget)."""
        return max(min(5.0, max(1.0, FIXUP_RESERVE_SHARE * self.req.budget_s)), self._check_time())

    def _check_time(self) -> float:
        """What the fresh-process check is likely to take: a Python and pytest start (the runners'
        own start, measured under the same load; at least 1 s) and the suite's time in the
        baseline (traced, so an overestimate), at most 30 % of the budget."""
        return min(0.3 * self.req.budget_s, max(1.0, self.start_s) + self.suite_s)

    def stopped(self) -> bool:
        if self.cancel.is_set() or self.left() <= 0.15:
            return True
        if self.stop_after is not None and time.monotonic() >= self.stop_after:
            return True
        return sum(1 for f in self.plausible if not f.unfinished) >= self.req.max_plausible

    def _start_workers(self) -> None:
        cores = os.cpu_count() or 1
        n = self.req.jobs or cores
        n = max(1, min(n, cores, 8))
        errors: list[BaseException] = []

        def start_one() -> None:
            try:
                worker = Worker(self.root, self.python, self.autoload, tests=self.rel_tests, site=self.site)
                with self.lock:
                    if self.cancel.is_set():
                        worker.close()
                        return
                    self.workers.append(worker)
                worker.start(timeout_s=max(5.0, min(30.0, self.left())))
            except (WorkerError, OSError) as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start_one, daemon=True) for _ in range(n)]
        self._starting = threads
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with self.lock:
            failed = [w for w in self.workers if w.proc is None]
            self.workers = [w for w in self.workers if w.proc is not None]
        for worker in failed:  # its copy of the workspace goes with it (it was left in the temp folder)
            worker.close()
        if not self.workers:
            raise WorkerError(f"could not start a test runner with {self.python}: {errors[:1]}")
        self.start_s = max(w.start_s for w in self.workers)

    def close(self) -> None:
        self.cancel.set()  # a runner still starting closes itself (start_one) ...
        for thread in getattr(self, "_starting", []):
            thread.join(30)  # ... and is waited for: an interrupt must not leave its workspace copy
        with self.lock:
            workers, self.workers = list(self.workers), []
        for w in workers:
            w.close()

    # -- phases --------------------------------------------------------------------------------
    def run(self) -> RepairResult:
        try:
            return self._run()
        except WorkerError as exc:
            return self._result("error", str(exc))
        finally:
            self.close()

    def _run_baseline(self) -> RunResult:
        """The tests on the original text, traced (coverage for localisation), every test run, then
        the ones the watchdog cut once more with more time (`_recheck_cut`)."""
        baseline = self.workers[0].run(
            self.rel_module, self.original, self.rel_tests, exitfirst=False, trace=True,
            timeout_s=max(1.0, min(60.0, self.left() * 0.5)), test_limit_s=BASELINE_TEST_LIMIT_S,
        )
        self.runs += 1
        return self._recheck_cut(baseline)

    def _recheck_cut(self, baseline: RunResult) -> RunResult:
        """A slow test (a sleep, a big computation) is no hang: the tests the baseline's watchdog cut
        at BASELINE_TEST_LIMIT_S run again, untraced, with up to a tenth of the budget each
        (SLOW_TEST_LIMIT_S). Those that finish take their outcome and time from this run, so the
        validation runs get the time the suite needs; before, a suite with a 3 s test could never
        pass. The run ends at the first test cut again (most likely the bug's hang, which the
        others share), so a module that loops forever costs one longer limit."""
        cut = [t.nodeid for t in baseline.tests if t.timeout]
        if not cut or self.cancel.is_set() or baseline.status != "ok":
            return baseline
        low, high = SLOW_TEST_LIMIT_S
        limit = min(high, max(low, 0.1 * self.left()))
        if self.left() < 3 * limit:  # no time for the tests it would find, either
            return baseline
        self.cut_limit = limit
        again = self.workers[0].run(self.rel_module, self.original, self.rel_tests, order=cut, only=cut,
                                    exitfirst=False, timeout_s=min(self.left() * 0.5, limit * len(cut) + 5.0),
                                    test_limit_s=limit, stop_on_timeout=True)
        self.runs += 1
        finished = {t.nodeid: t for t in again.tests if not t.timeout}
        if not finished:
            log.info("repair: %d test(s) ran past %.1fs again: taken as hanging", len(cut), limit)
            return baseline
        # the one it cut again last, so that the rest are checked before it runs out its limit
        self.cut_again = [t.nodeid for t in again.tests if t.timeout]
        log.info("repair: %d of %d test(s) cut at %.1fs finish within %.1fs: slow, not hanging",
                 len(finished), len(cut), BASELINE_TEST_LIMIT_S, limit)
        self.test_limit = max(self.test_limit, 2.0 * max(t.seconds for t in finished.values()) + 0.5)
        tests = []
        for t in baseline.tests:  # the coverage stays the baseline's (this run is not traced)
            done = finished.get(t.nodeid)
            tests.append(t if done is None else replace(t, outcome=done.outcome, seconds=done.seconds,
                                                        timeout=False, failure=done.failure))
        return replace(baseline, tests=tests)

    def _run(self) -> RepairResult:
        self.progress("starting test runners", 0.0)
        # The outcome cache outlives a search (the server's process): a verdict holds only while the
        # files the runs read, a helper module, conftest.py or a data file, are as they were. Taken
        # here, in the search's thread, as the copies are made (a walk of the workspace).
        self.tests_digest = _digest(self.python, workspace_fingerprint(self.root, self.module), *self.test_texts)
        # the workspace's folders the interpreter imports from by itself (an editable install): once
        self.site = site_folders(self.python, self.root)
        self._start_workers()
        if self.cancel.is_set():
            return self._result("cancelled", "Cancelled.")
        self.progress("running the tests with coverage", 0.05)
        baseline = self._run_baseline()
        # The plugins are also needed when pytest refuses to start without them: the project's
        # addopts use a plugin's option (`--timeout=30`, `-n 2`) or `required_plugins` name one.
        if not self.autoload and (_needs_plugins(baseline) or _usage_error(baseline)):
            log.info("repair: the tests need pytest plugins (async tests, or the project's pytest options); "
                     "runners restart with them")
            self.autoload = True
            self.close()
            self.cancel.clear()
            self._start_workers()
            baseline = self._run_baseline()
        self.baseline = baseline
        missing = self._missing_module(baseline)
        if missing is not None:
            return self._result("error", missing)
        not_started = self._not_started(baseline)
        if not_started is not None:
            return self._result("error", not_started)
        if baseline.status == "ok" and baseline.collected == 0 and not baseline.tests and not baseline.errors:
            # every candidate would "pass" an empty run: there is nothing to check a fix against
            return self._result("error", f"No tests were collected from {', '.join(self.rel_tests)} (pytest runs "
                                         "`test_*` functions and methods of `Test*` classes): nothing to check a fix against.")
        cut = [t.nodeid for t in baseline.tests if t.timeout]
        if cut and any(not t.timeout for t in baseline.failed):
            self.set_aside = sorted(cut, key=lambda n: n in self.cut_again)  # not reached first
            baseline = self.baseline = replace(baseline, tests=[t for t in baseline.tests if not t.timeout])
            log.info("repair: %d test(s) still running after %.1fs set aside (slow, or hung by the bug); the search "
                     "runs the other %d", len(cut), self.cut_limit, len(baseline.tests))
        failing = baseline.failed
        if baseline.status == "ok" and not failing and not baseline.errors and baseline.collected > 0:
            return self._result("no-failing-tests", "All tests pass: nothing to fix.")
        ran_ok = [t for t in baseline.tests if not t.timeout]
        self.expected_tests = len([t for t in baseline.tests if t.outcome != "skipped"]) or baseline.collected
        self.order = [t.nodeid for t in failing] + [t.nodeid for t in baseline.tests if t.outcome == "passed"]
        self.failing_order = [t.nodeid for t in failing]
        self.failing_files = sorted({n.split("::", 1)[0] for n in self.failing_order} & set(self.rel_tests))
        self.suite_s = sum(t.seconds for t in ran_ok)
        # traced times overestimate untraced ones: a generous but bounded limit per validation run
        self.run_timeout = max(2.0, 3.0 * self.suite_s + 1.0)
        self.floor_timeout = max(0.6, 3.0 * self.suite_s + 0.4)
        if baseline.status != "ok":
            self.run_timeout = max(self.run_timeout, 5.0)
        flaky = self._flaky(baseline)
        if flaky:
            return self._result("error", (
                f"{_shown(flaky)} failed on the unchanged code, then passed when run again: the test is flaky "
                "(random, time- or order-dependent, or it depends on what an earlier run left behind), so no change "
                "can be proven to fix it, and none is searched for. Make the test deterministic, or leave it out."))

        self.has_pytest = self.workers[0].has_pytest
        self.fast = self._check_fast(baseline)

        # the module's lines (a final line break ends the last line: no line after it to suspect)
        lines = self.original.count("\n") + (0 if self.original.endswith("\n") else 1)
        scores = localise(baseline.tests, self.rel_module, all_lines=set(range(1, max(lines, 1) + 1)))
        line_scores = {s.line: s.score for s in scores}
        if self.req.focus_line is not None:
            for ln in range(self.req.focus_line - 2, self.req.focus_line + 3):
                if ln in line_scores:
                    line_scores[ln] = min(1.0, line_scores[ln] + 0.2)
        self.scores = scores

        self.progress("generating candidates", 0.1)
        if syntax_fix.syntax_error(self.original) is not None:
            for cand in syntax_fix.candidates(self.original, max_rounds=3):
                self.queue.push(cand)
        else:
            for cand in operators.generate(self.original, line_scores, self._test_strings()):
                self.queue.push(cand)
            raised = error_guided.raised_in((t.failure for t in failing), self.rel_module)
            for cand in error_guided.candidates(self.original, raised):
                self.queue.push(cand)
        for cand in ruff_fixes.candidates(self.original, str(self.module), self.root):
            cand.score = cand.prior * 0.5
            self.queue.push(cand)
        total = len(self.queue)
        self.search_start = time.monotonic()
        log.info("repair: %d candidates, %d failing tests, run timeout %.1fs", total, len(failing), self.run_timeout)

        llm_thread = None
        if self.req.chat is not None:
            llm_thread = threading.Thread(target=self._llm_loop, args=(failing,), daemon=True)
            llm_thread.start()

        threads = [threading.Thread(target=self._work, args=(w, total), daemon=True) for w in self.workers]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.1)
                if self.cancel.is_set():
                    self.close()  # kills the runners and their children now
        if self.cancel.is_set():
            return self._result("cancelled", "Cancelled.")
        return self._finish()

    def _flaky(self, baseline: RunResult) -> list[str]:
        """The failing tests that pass when the baseline's tests run again on the unchanged code, in
        the same order (a test failing for what an earlier test left in the module's state still
        fails): REPRODUCE_RUNS more runs, untraced, while the budget allows. Such a test "passes"
        with any candidate by chance: until 2026-12-03 a test failing 40 % of the time had fixes
        offered, and confirmed, on lines no test runs (`-` → `+` in an untested function). Tests cut
        by the watchdog are left out (a hang costs its limit)."""
        ids = {t.nodeid for t in baseline.failed if not t.timeout}
        order = [t.nodeid for t in baseline.tests if not t.timeout]
        if not ids:
            return []
        for _ in range(REPRODUCE_RUNS):
            if self.cancel.is_set() or self.left() < 2 * self.fixup_reserve() + 4 * self.suite_s:
                break
            again = self.workers[0].run(self.rel_module, self.original, self.rel_tests, order=order, only=order,
                                        exitfirst=False, timeout_s=max(1.0, min(self.run_timeout, 0.2 * self.left())),
                                        test_limit_s=self.test_limit)
            self.runs += 1
            passed = [t.nodeid for t in again.passed if t.nodeid in ids]
            if passed:
                log.info("repair: failing test(s) pass on a second run of the original: %s", passed)
                return passed
        return []

    def _test_strings(self) -> set[str]:
        """The string literals of the test files and of the files they take fixtures and expected
        values from (`support_files`); a file that does not parse gives none."""
        found: set[str] = set()
        texts = list(self.test_texts)
        for path in self.support_files():
            try:
                texts.append(path.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
        for text in texts:
            try:
                tree = pyparse.parse(text)
            except (SyntaxError, ValueError):
                continue
            found.update(n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str))
        return found

    def support_files(self) -> list[Path]:
        """The conftest.py files from each test's folder up to the project's root, and the modules
        beside a test file (or at the root) that it imports, but not the module under repair.
        Found once (the server asks before the search, the search for the tests' strings)."""
        if self._support is None:
            self._support = self._find_support_files()
        return self._support

    def _find_support_files(self) -> list[Path]:
        found: list[Path] = []

        def add(path: Path) -> None:
            if path.is_file() and path != self.module and path not in self.tests and path not in found:
                found.append(path)

        for test, text in zip(self.tests, self.test_texts):
            folder = test.parent
            while folder == self.root or self.root in folder.parents:
                add(folder / "conftest.py")
                folder = folder.parent
            try:
                tree = pyparse.parse(text)
            except (SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                for name in names:
                    relative = Path(*name.split(".")).with_suffix(".py")
                    add(test.parent / relative)
                    add(self.root / relative)
        return found

    def _missing_module(self, baseline: RunResult) -> str | None:
        """Why no edit can help when the tests could not even be imported for want of a package the
        module under repair does not import (pytest itself, a test dependency): said at once, not
        after a budget of candidates that all fail the same way."""
        if baseline.failed or not baseline.errors:
            return None
        names = set()
        for error in baseline.errors:
            found = _MISSING_MODULE.search(_error_line(error))
            if found is None:
                return None
            names.add(found.group(1))
        for name in names:
            top = name.split(".")[0]
            word = re.escape(top)
            mentioned = re.search(rf"^\s*(?:import\s[^\n]*\b{word}\b|from\s+{word}\b)", self.original, re.MULTILINE)
            if (mentioned or top == Path(self.rel_module).stem or (self.root / f"{top}.py").exists()
                    or (self.root / top).is_dir()):
                return None  # the module's own import, or a name a candidate could make importable
        first = baseline.errors[0]
        listed = ", ".join(sorted(names))
        return (f"The tests could not run ({first.get('nodeid') or 'collection'}: {_error_line(first)}), and no "
                f"edit of {self.rel_module} can provide {listed}: install it for {self.python} "
                f"(`{self.python} -m pip install {sorted(names)[0].split('.')[0]}`), or point heedls at the "
                f"interpreter that has it (`--python`, or `tests.python` in pyproject.toml).")

    def _not_started(self, baseline: RunResult) -> str | None:
        """Why pytest could not even start (a usage or internal error: an option no plugin adds,
        an unreadable pyproject.toml), in pytest's words: no edit of the module can help, unless
        the module is what failed (a conftest.py importing it)."""
        text = _startup_error(baseline)
        if text is None or Path(self.rel_module).name in text:
            return None
        for worker in self.workers[:1]:  # paths as the user knows them, not the copy's
            for copy in {str(worker.copy.resolve()), str(worker.copy)}:
                text = text.replace(copy, str(self.root))
        text = _USAGE_SYNOPSIS.sub("", text.replace("pytest.main()", "pytest"))
        said = ("; ".join(line.strip().rstrip(".") for line in text.splitlines() if line.strip())
                or f"it exited {baseline.rc} before running a test, saying nothing")
        hint = ""
        if "unrecognized arguments" in said:
            hint = (f" With every plugin {self.python} has loaded, pytest still does not know the option (the "
                    "project's addopts, or PYTEST_ADDOPTS): install the plugin that adds it there, or point heedls "
                    "at the interpreter that has it (`--python`, or `tests.python` in pyproject.toml).")
        return f"pytest could not start: {said}.{hint}"

    def _check_fast(self, baseline: RunResult) -> bool:
        """Use the no-re-collection path only if it reproduces the baseline's outcomes: the failing
        tests fail, and the passing ones pass but for a few (at most a tenth, or 2), which the search
        then leaves to the fresh-process check (`fast_skip`). cachetools' decorator tests fail on the
        fast path, where a closure made at import meets the swapped-in classes; refusing the fast
        path for them made every run re-collect (2-7 times slower)."""
        worker = self.workers[0]
        if not worker.fast or baseline.status != "ok" or baseline.errors:
            return False
        # passing tests first; the run ends at the first test cut by the limit: cheap even when
        # every failing test hangs
        passed = [t.nodeid for t in baseline.passed]
        failed = {t.nodeid for t in baseline.failed}
        only = passed + sorted(failed) if self.set_aside else None
        check = worker.run(self.rel_module, self.original, self.rel_tests, order=passed + sorted(failed),
                           exitfirst=False, timeout_s=max(2.0, min(self.left() * 0.3, 2 * self.run_timeout + 2.0)),
                           test_limit_s=self.test_limit, fast=True, only=only, stop_on_timeout=True)
        self.runs += 1
        ran = {t.nodeid: t.outcome for t in check.tests}
        lost = [n for n in passed if ran.get(n) != "passed"]
        same = (
            check.status == "ok"
            and not check.errors
            and len(lost) <= max(2, len(passed) // 10)
            and (not failed or any(n in ran for n in failed))
            and all(outcome == "failed" for n, outcome in ran.items() if n in failed)
        )
        if not same:
            log.info("repair: fast path disagrees with the baseline; re-collecting for every run")
            return False
        if self._reaches_collected_module(worker, baseline):
            return False
        if lost:
            log.info("repair: %d passing test(s) fail on the fast path (%s); the search runs without them and the "
                     "fresh-process check with them", len(lost), ", ".join(lost[:3]))
            self.fast_skip = lost
            self.order = [n for n in self.order if n not in set(lost)]
            self.expected_tests -= len(lost)
        return True

    def _reaches_collected_module(self, worker: Worker, baseline: RunResult) -> bool:
        """Whether the failing tests still run the module as collected after the fast path's swap
        (an object made at import, a closure, a registry): then no candidate could change what they
        do there. Watched in the tests a fix must change, those that failed (not hung) on the original;
        the fresh-process check covers the passing ones."""
        watched = [t.nodeid for t in baseline.failed if not t.timeout]
        if not watched:
            return False
        run = worker.run(self.rel_module, self.original, self.rel_tests, order=watched, only=watched, exitfirst=False,
                         timeout_s=max(2.0, min(self.left() * 0.2, 2 * self.run_timeout + 2.0)),
                         test_limit_s=2.0 * self.test_limit, fast=True, stale_check=True)  # the watch costs time
        self.runs += 1
        if run.stale:
            where = ", ".join(f"{s.get('function')} (line {s.get('line')}) from {s.get('from') or '?'}"
                              for s in run.stale[:3])
            log.info("repair: the tests reach the module as collected (%s), not a swapped-in candidate; "
                     "re-collecting for every run", where)
        return bool(run.stale)

    def _work(self, worker: Worker, total: int) -> None:
        idle_since: float | None = None
        while not self.stopped():
            cand = self.queue.pop()
            if cand is None and self._second_order():
                continue
            if cand is None:
                if self.llm_pending > 0 and not self.cancel.is_set():
                    idle_since = idle_since or time.monotonic()
                    time.sleep(0.05)
                    continue
                return
            idle_since = None
            try:
                new_text = cand.apply(self.original)
            except ValueError:
                continue
            norm = normalised(new_text)
            if norm is None:
                continue
            with self.lock:
                if norm in self.seen and not cand.extra.get("retry"):
                    continue
                if norm not in self.seen:
                    self.tried += 1
                self.seen.add(norm)
                tried = self.tried
            key = _digest(self.tests_digest, new_text)
            unfinished: list[str] = []
            cached = _CACHE.get(key)
            if cached is not None:
                ok = cached
                result = None
            else:
                limit = self.run_timeout if cand.extra.get("retry") else self._timeout()
                timeout = min(limit, max(0.2, self.left()))
                try:
                    result, timeout = self._validate(worker, new_text, timeout)
                except (WorkerError, OSError, ValueError):
                    return
                with self.lock:
                    self.runs += 1
                    if result.status == "ok":
                        self.durations.append(result.seconds)
                ok = self._plausible(result)
                if ok and self.set_aside:
                    try:
                        ok, unfinished = self._check_set_aside(worker, new_text)
                    except (WorkerError, OSError, ValueError):
                        return
                if (result.status != "timeout" or timeout >= self.run_timeout) and not unfinished:
                    if len(_CACHE) < _CACHE_MAX:
                        _CACHE[key] = ok
            if cand.source == "llm":
                self._llm_feedback(cand, result, ok)
            if tried % 10 == 0:
                self.progress(f"tried {tried} candidates", min(0.95, 0.1 + 0.85 * (1 - max(0.0, self.left()) / self.req.budget_s)))
            if (result is not None and result.status == "timeout" and timeout < self.run_timeout
                    and not cand.extra.get("retry")):
                cand.extra["retry"] = True
                if self.failing_order and set(self.failing_order) <= {t.nodeid for t in result.passed}:
                    # the tests that failed pass: it ran out of time in the passing ones, which a
                    # fix runs in full where other candidates stop at the first failure: next, in full
                    cand.score += 1000.0
                else:  # maybe only a load spike: run it again with the full limit after everything else
                    cand.score *= 0.02
                self.queue.push(cand)
            if ok:
                self._record(cand, new_text, unfinished, taken_as=tried)
            elif result is not None and cand.spans and cand.new_text is None and "+" not in cand.operator:
                # how far the run got before the first failure (previously failing tests run first)
                with self.lock:
                    self.tried_singles.append((len(result.passed), cand))

    def _validate(self, worker: Worker, new_text: str, timeout: float) -> tuple[RunResult, float]:
        """One candidate's run: the failing tests first, stopping at the first failure. Without the
        fast path every run collects its test files again (0.28 s a run over cachetools' 9 files, 0.09
        s over the failing tests' one): the failing tests' files alone first, the whole suite only for
        a candidate they all pass, with the full limit (it runs everything, where most stop early).
        Returns the run that decides and the limit it had."""
        only = self._search_only()
        if not self.fast and 0 < len(self.failing_files) < len(self.rel_tests):
            first = worker.run(self.rel_module, new_text, self.failing_files, order=self.failing_order,
                               only=self.failing_order, exitfirst=True, timeout_s=timeout, fast=False)
            if first.status != "ok" or first.errors or len(first.passed) < len(self.failing_order):
                return first, timeout
            with self.lock:
                self.runs += 1
            timeout = min(self.run_timeout, max(0.2, self.left()))
        return worker.run(self.rel_module, new_text, self.rel_tests, order=self.order, exitfirst=True,
                          timeout_s=timeout, fast=self.fast, only=only), timeout

    def _search_only(self) -> list[str] | None:
        """The tests a search run asks for by name: all it runs (`order`) when some are left out
        (set aside, or failing on the fast path only), else None (every collected test)."""
        return self.order if self.set_aside or self.fast_skip else None

    def _check_set_aside(self, worker: Worker, new_text: str) -> tuple[bool, list[str]]:
        """Run the set-aside tests on a candidate that passes the others: (no test failed, those
        still running past `cut_limit` or not reached). The candidate that fixes a hang makes them
        finish; a slow test runs past its limit as on the original and leaves the fix unchecked there."""
        limit = self._set_aside_limit()
        result = worker.run(self.rel_module, new_text, self.rel_tests, order=self.set_aside, only=self.set_aside,
                            exitfirst=True, timeout_s=min(max(0.2, self.left()), limit * len(self.set_aside) + 5.0),
                            test_limit_s=limit, stop_on_timeout=True, fast=self.fast)
        with self.lock:
            self.runs += 1
        if result.errors or any(t.outcome == "failed" and not t.timeout for t in result.tests):
            return False, []
        passed = {t.nodeid for t in result.passed}
        return True, [n for n in self.set_aside if n not in passed]

    def _timeout(self) -> float:
        """Per-run limit: generous until a few runs were measured, then 6x the typical run."""
        if len(self.durations) < 2:
            return max(self.floor_timeout, min(self.run_timeout, 1.0))
        recent = sorted(self.durations[-20:])
        typical = recent[len(recent) // 2]
        return min(self.run_timeout, max(self.floor_timeout, 6.0 * typical))

    def _second_order(self) -> bool:
        """When every single edit failed, try pairs of them (best-progressing and best-scored first)."""
        with self.lock:
            if self.second_order_done or self.plausible:
                return False
            self.second_order_done = True
            singles = sorted(self.tried_singles, key=lambda p: (-p[0], -p[1].score))[:60]
        pairs: list[Candidate] = []
        for i, (pa, a) in enumerate(singles):
            for pb, b in singles[i + 1 :]:
                if any(not (x.end <= y.start or y.end <= x.start) for x in a.spans for y in b.spans):
                    continue
                progress = 1.0 + pa + pb
                pairs.append(Candidate(a.spans + b.spans, f"{a.operator}+{b.operator}", f"{a.description}; {b.description}",
                                       a.line, a.prior * b.prior, 0.01 * progress * a.score * b.score))
        pairs.sort(key=lambda c: -c.score)
        for cand in pairs[:2000]:
            self.queue.push(cand)
        log.info("repair: %d second-order candidates", min(len(pairs), 2000))
        return bool(pairs)

    def _plausible(self, result: RunResult) -> bool:
        if result.status != "ok" or result.rc != 0 or result.errors:
            return False
        if any(t.outcome == "failed" for t in result.tests):
            return False
        return len(result.passed) >= self.expected_tests

    def _record(self, cand: Candidate, new_text: str, unfinished: list[str] | None = None,
                taken_as: int = 0) -> None:
        elapsed = time.monotonic() - self.start
        new_text = drop_redundant_parens(self.original, new_text)  # the same AST: the tests' verdict holds
        fix = PlausibleFix(
            new_text=new_text,
            patch=unified_diff(self.original, new_text, self.rel_module),
            operator=cand.operator,
            description=cand.description,
            line=cand.line,
            score=cand.score,
            size=change_size(self.original, new_text),
            source=cand.source,
            found_after_s=elapsed,
            smells=introduced_smells(self.original_smells, new_text),
            unfinished=list(unfinished or []),
            taken_as=taken_as,
        )
        with self.lock:
            first_checked = not fix.unfinished and all(f.unfinished for f in self.plausible)
            self.plausible.append(fix)
            if self.first_plausible_s is None:
                self.first_plausible_s = elapsed
            if first_checked:
                # look a little further for a smaller fix, then stop: in time for the fix-up (the
                # behaviour profile and the fresh-process check) to end within the budget
                self.stop_after = min(time.monotonic() + min(max(1.0, 0.25 * elapsed), 5.0),
                                      self.deadline - self.fixup_reserve())
            elif fix.unfinished and self.stop_after is None:
                # it may pass the others only (the set-aside tests may be the bug's hang): search on
                # for one that makes them finish, as long again as this one took
                searched = time.monotonic() - (self.search_start or self.start)
                self.stop_after = min(time.monotonic() + max(2.0, searched), self.deadline - self.fixup_reserve())
        self.progress(f"plausible fix found ({cand.operator})", 0.9)

    # -- LLM -----------------------------------------------------------------------------------
    def _llm_loop(self, failing: list[TestOutcome]) -> None:
        from heedls.analyzers.repair.llm import llm_candidates

        test_source = "\n\n".join(t.read_text(encoding="utf-8", errors="replace") for t in self.tests)
        for round_no in range(self.req.llm_rounds):
            if self.stopped() or self.plausible:
                return
            self.llm_pending += 1
            try:
                cands = asyncio.run(
                    llm_candidates(self.req.chat, self.rel_module, self.original, test_source, failing,
                                   list(self.llm_feedback), samples=self.req.llm_samples,
                                   deadline_s=max(1.0, min(60.0, self.left() - 1.0)), round_no=round_no)
                )
            finally:
                self.llm_pending -= 1
            if not cands:
                continue
            waiting = len(cands)
            for c in cands:
                c.score = 2.0 - 0.01 * round_no  # ahead of every mutation
                self.queue.push(c)
            # wait until this round's candidates were run, then ask again with their feedback
            deadline = time.monotonic() + max(0.0, self.left())
            target = len(self.llm_feedback) + waiting
            self.llm_pending += 1
            try:
                while len(self.llm_feedback) < target and time.monotonic() < deadline and not self.stopped():
                    time.sleep(0.05)
            finally:
                self.llm_pending -= 1

    def _llm_feedback(self, cand: Candidate, result: RunResult | None, ok: bool) -> None:
        if ok:
            note = "passed all tests"
        elif result is None:
            note = "failed (seen before)"
        else:
            failed = result.failed[:1]
            if failed:
                from heedls.analyzers.repair.llm import describe_failure

                note = "still failed:\n" + describe_failure(failed[0], limit=3)
            elif result.errors:
                note = "could not be imported/collected: " + str(result.errors[0].get("message", ""))[-400:]
            else:
                note = f"did not finish ({result.status})"
        diff = unified_diff(self.original, cand.apply(self.original), self.rel_module)
        with self.lock:
            self.llm_feedback.append(f"Attempt:\n```diff\n{diff[:1500]}\n```\nResult: {note}")

    # -- results -------------------------------------------------------------------------------
    def _confirm(self, fix: PlausibleFix) -> bool:
        """Fresh-process check (no fork-server): a separate copy, `python -m pytest -x`."""
        if not self.has_pytest:
            return self._confirm_direct(fix)
        try:
            # The search runs with one hash seed (0, for repeatable outcomes); a fix that passes only
            # by that seed's set and dict-of-hash order (`list(set(xs))` for "unique, in order") is no
            # fix: it must pass under two others as well. Each run gets a clean copy: tests may write
            # into the workspace (even over the module), and the scorer's one run starts clean.
            # The seeds' runs go side by side: one after the other, a fix found late overran the
            # budget by two runs' time.
            # A fresh pytest starts Python and the project's plugins again, and xdist's `-n` (addopts)
            # starts more of them: 16 s was too little for `-n 2` on a loaded 2-core machine (two
            # controllers and four workers side by side). The runners' start, measured under the
            # same load, scales the limit with it.
            timeout = max(1.0, min(self.left() + self.req.budget_s * 0.08,
                                   10.0 + 3 * self.run_timeout + 3 * self.start_s))
            with concurrent.futures.ThreadPoolExecutor(len(CONFIRM_HASH_SEEDS), "heedls-confirm") as pool:
                runs = [pool.submit(self._confirm_run, fix.new_text, seed, timeout) for seed in CONFIRM_HASH_SEEDS]
                return all(run.result() for run in runs)
        except OSError:
            return False

    def _confirm_run(self, text: str, seed: str, timeout: float) -> bool:
        with self._fresh_copy(text, "heedls-confirm-") as copy:
            env = sandbox_env(copy, self.root, self.autoload, self.site)
            # the set-aside tests ran in the search (`_check_set_aside`); here they would only cost their time
            deselect = [arg for nodeid in self.set_aside for arg in ("--deselect", nodeid)]
            # supervised (proc.Limits): the real workspace read-only, out of reach of a test that kills
            # its parent, and what the tests leave running (a daemon) killed at the end
            result = proc.run([self.python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *deselect, *self.rel_tests],
                              cwd=copy, timeout_s=timeout, env={**env, "PYTHONHASHSEED": seed},
                              limits=sandbox_limits(self.root, copy.parent, CHECK_MEMORY_BYTES))
            if result.readonly_error is not None:
                note_unprotected(self.root, result.readonly_error)
            if result.memory_exceeded:
                log.info("repair: the fresh-process check held %d bytes, past its limit: stopped", result.memory_exceeded)
            if result.timed_out:
                self.confirm_timed_out = timeout
            return result.returncode == 0

    @contextlib.contextmanager
    def _fresh_copy(self, text: str, prefix: str) -> Iterator[Path]:
        """A throwaway copy of the workspace whose module under repair holds `text`."""
        tmp = Path(tempfile.mkdtemp(prefix=prefix))
        try:
            copy = tmp / "ws"
            copy.mkdir()
            copy_workspace(self.root, copy)
            (copy / self.rel_module).write_text(text, encoding="utf-8")
            yield copy
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _confirm_direct(self, fix: PlausibleFix) -> bool:
        """No pytest in the workspace interpreter: a fresh runner (no fast path) in a fresh copy."""
        worker = Worker(self.root, self.python, self.autoload, site=self.site)
        try:
            worker.start()
            result = worker.run(self.rel_module, fix.new_text, self.rel_tests, order=self.order, exitfirst=True,
                                timeout_s=max(1.0, 10.0 + 3 * self.run_timeout), only=self._search_only())
            return self._plausible(result)
        except (WorkerError, OSError):
            return False
        finally:
            worker.close()

    @functools.cached_property
    def original_smells(self) -> Counter[str]:
        """The module's own lint-like findings: what each plausible fix is compared with (once)."""
        return smells(self.original)

    def _behaviour_changes(self, fixes: list[PlausibleFix]) -> list[int] | None:
        """For each fix, on how many of the calls whose tests the original passed it returns something
        else or runs other lines (runner/heedls_repair_profile.py, in a fresh copy). None when that
        cannot be told (no pytest, a timeout, an error)."""
        if not self.has_pytest:
            return None
        request = {"module": self.rel_module, "tests": self.rel_tests, "original": self.original,
                   "fixes": [f.new_text for f in fixes], "max_calls": 100, "call_limit_s": 0.5,
                   "deselect": self.set_aside}
        # Only the ranking needs it: it gets what the budget has left once the fresh-process check
        # (a second or so) is set aside, or is skipped. Before, it had up to a tenth of the budget past
        # the end, and a profile that timed out took a 20 s repair to 22 s.
        timeout = min(self.left() - max(PROFILE_LEAVES_S, self._check_time()), 2.0 + 3 * self.run_timeout)
        if timeout < PROFILE_MIN_S:
            log.info("repair: no behaviour profile of the fixes: %.1fs left of the budget", self.left())
            return None
        if timeout < PROFILE_SUITE_FACTOR * self.suite_s:
            # it runs the whole suite under a profile function first: a slow suite would spend the
            # time the fresh-process check needs and end in a timeout anyway (more-itertools: 19 s
            # wasted, then the check of the right fix ran out of time and a worse fix was offered)
            log.info("repair: no behaviour profile of the fixes: the suite takes %.1fs, %.1fs left for it",
                     self.suite_s, timeout)
            return None
        try:
            with self._fresh_copy(self.original, "heedls-profile-") as copy:
                result = proc.run([self.python, str(PROFILER)], cwd=copy, timeout_s=timeout, stdin=json.dumps(request),
                                  env=sandbox_env(copy, self.root, self.autoload, self.site))
            lines = result.stdout.strip().splitlines()
            answer = json.loads(lines[-1]) if lines else {}
        except (OSError, ValueError) as exc:
            log.info("repair: no behaviour profile of the fixes: %s", exc)
            return None
        changed = answer.get("changed") if isinstance(answer, dict) else None
        if not isinstance(changed, list) or len(changed) != len(fixes) or not all(isinstance(k, int) for k in changed):
            log.info("repair: no behaviour profile of the fixes: %s", answer.get("error") if isinstance(answer, dict) else answer)
            return None
        log.info("repair: calls the original passed: %s; changed by each fix: %s", answer.get("calls"), changed)
        return changed

    def _finish(self) -> RepairResult:
        # a fix that leaves code a linter would flag (a variable computed and never read, `y - y`, `and`
        # mixed with `or`) is how a fix overfits the tests: it ranks after every fix that adds none.
        # Then, of several fixes, one that changes what the original did where its tests passed
        # (a result, or which lines run) ranks after one that leaves that alone (PATCH-SIM).
        if len(self.plausible) > 1:
            changed = self._behaviour_changes(self.plausible)
            for fix, k in zip(self.plausible, changed or [0] * len(self.plausible)):
                fix.changed_calls = k
        # a fix checked on every test first: one the set-aside tests still ran past is checked on the others only
        ranked = sorted(self.plausible, key=lambda f: (bool(f.unfinished), f.smells, f.changed_calls, f.size, -f.score,
                                                       f.found_after_s))
        chosen: list[PlausibleFix] = []
        for fix in ranked:
            if self.req.confirm and not chosen and self.left() > -0.05 * self.req.budget_s:
                if not self._confirm(fix):
                    log.info("repair: candidate rejected by the fresh-process check: %s", fix.description)
                    self.rejected.append(fix)
                    continue
                fix.confirmed = True
            chosen.append(fix)
        self.plausible = chosen
        if not chosen:
            return self._result("not-found", self._not_found_text())
        text = self._explain(chosen[0])
        if self.req.confirm and not chosen[0].confirmed:
            # the budget ran out before the fresh-process check: offered, but not as proven as the others
            text += (" Not confirmed in a fresh process (a clean `python -m pytest` in a new copy): the time "
                     "budget ran out first; run the tests yourself, or give the repair more time.")
        return self._result("fixed", text)

    def _not_found_text(self) -> str:
        failing = self.baseline.failed if self.baseline else []
        where = ", ".join(f"line {s.line}" for s in getattr(self, "scores", [])[:3])
        errors = self.baseline.errors if self.baseline else []
        if not failing and errors:  # nothing failed: the tests did not run at all
            first = errors[0]
            why = _error_line(first) or "no message"
            return (f"The tests could not run ({first.get('nodeid') or 'collection'}: {why}), and no candidate "
                    f"made them run and pass within the budget ({self.tried} candidates tried).")
        if self.rejected and self.confirm_timed_out is not None:
            # not "flaky": pytest did not exit (a multiprocessing child, a thread or process the tests
            # start and never stop: the search's runs end when the tests do, a fresh pytest when all is done)
            shown = self.rejected[0]
            return (f"{len(self.rejected)} candidate(s) made the tests pass in the search, but the fresh-process check "
                    f"(`python -m pytest` in a clean copy) of line {shown.line}: {shown.description} did not finish "
                    f"within {self.confirm_timed_out:.0f}s. If the tests pass, pytest is not exiting: a process or "
                    "non-daemon thread the tests start and never stop (a multiprocessing child) keeps it waiting; "
                    f"no fix is offered ({self.tried} candidates tried).")
        if self.rejected:  # "no candidate made them pass" would be false: say why none is offered
            shown = self.rejected[0]
            return (f"{len(self.rejected)} candidate(s) made the tests pass in the search but failed the fresh-process "
                    f"check (`python -m pytest` in a clean copy), e.g. line {shown.line}: {shown.description}. "
                    "The tests may be flaky or depend on the hash seed or on state left by an earlier run; "
                    f"no fix is offered ({self.tried} candidates tried).")
        if not failing and self.baseline is not None and self.baseline.status != "ok":
            return (f"{_ENDED_EARLY[self.baseline.status == 'timeout']}, and no candidate made the tests run and "
                    f"pass within the budget ({self.tried} candidates tried). Most suspicious: {where or 'unknown'}.")
        return (
            f"No candidate made the {len(failing)} failing test(s) pass within the budget "
            f"({self.tried} candidates tried). Most suspicious: {where or 'unknown'}."
        ) + (f" {self._set_aside_names()} ran past {self.cut_limit:.1f}s on the original and were set aside."
             if self.set_aside else "")

    def _set_aside_limit(self) -> float:
        """The set-aside tests' limit on a candidate: what the original ran past, and no less than the
        recheck's least (when the baseline left no time for the recheck they were cut at 0.6 s, and
        tests of about a second, more-itertools' `test_roundtrip`, read as "not checked")."""
        return max(self.cut_limit, SLOW_TEST_LIMIT_S[0])

    def _set_aside_names(self) -> str:
        return f"{len(self.set_aside)} test(s) ({_shown(self.set_aside)})"

    def _explain(self, fix: PlausibleFix) -> str:
        failing = self.baseline.failed if self.baseline else []
        passing = self.baseline.passed if self.baseline else []
        first = failing[0] if failing else None
        what = ""
        if first and first.failure and first.failure.get("type") == RUN_ENDED:
            what = f" `{first.nodeid}` did not finish: {first.failure.get('message')}."
        elif first and first.failure:
            what = f" `{first.nodeid}` failed with {first.failure.get('type')}"
            msg = str(first.failure.get("message", "")).strip().splitlines()
            if msg:
                what += f" ({msg[0][:120]})"
            what += "."
        errors = self.baseline.errors if self.baseline else []
        if not failing and errors:  # nothing ran: the tests could not even be collected
            last = _error_line(errors[0])
            return (f"Line {fix.line}: {fix.description} ({fix.operator}). The tests could not run"
                    + (f" ({last[:120]})" if last else "") + "; with this change they run and pass.")
        if not failing and self.baseline is not None and self.baseline.status != "ok":
            return (f"Line {fix.line}: {fix.description} ({fix.operator}). {_ENDED_EARLY[self.baseline.status == 'timeout']}; "
                    "with this change the tests run and pass.")
        text = (
            f"Line {fix.line}: {fix.description} ({fix.operator}).{what} With this change the "
            f"{len(failing)} failing test(s) pass and the {len(passing)} passing test(s) still pass."
        )
        if fix.unfinished and len(fix.unfinished) == len(self.set_aside):
            return text + (f" Not checked against the {self._set_aside_names()} that ran past {self.cut_limit:.1f}s "
                           f"on the original: with it they ran past {self._set_aside_limit():.1f}s too; run them yourself.")
        if fix.unfinished:
            shown = _shown(fix.unfinished)
            return text + (f" Of the {self._set_aside_names()} that ran past {self.cut_limit:.1f}s on the original, "
                           f"{len(self.set_aside) - len(fix.unfinished)} pass with it; {shown} ran past "
                           f"{self._set_aside_limit():.1f}s with it too: not checked, run them yourself.")
        if self.set_aside:
            return text + (f" The {self._set_aside_names()} that ran past {self.cut_limit:.1f}s on the original "
                           "finish and pass with it.")
        return text

    def _result(self, status: str, explanation: str) -> RepairResult:
        best = self.plausible[0] if self.plausible and status == "fixed" else None
        return RepairResult(
            fixed=best is not None,
            patch=best.patch if best else "",
            candidates_tried=self.tried,
            test_runs=self.runs,
            seconds=time.monotonic() - self.start,
            explanation=explanation,
            status=status,
            fixes=list(self.plausible) if best else [],
            first_plausible_s=self.first_plausible_s if best else None,
            operator=best.operator if best else None,
            failing_tests=[t.nodeid for t in self.baseline.failed] if self.baseline else [],
            suspicious_lines=list(getattr(self, "scores", [])[:10]),
            new_text=self.bom + best.new_text if best else None,
            module=self.rel_module,
            set_aside=list(self.set_aside),
        )


def _shown(nodeids: list[str], most: int = 3) -> str:
    """`a`, `b`, `c` and 2 more."""
    more = len(nodeids) - most
    return ", ".join(f"`{n}`" for n in nodeids[:most]) + (f" and {more} more" if more > 0 else "")


# A baseline with no test reported and no collection error: the run itself ended early, and
# "the 0 failing test(s) pass" would say nothing (indexed by "it ran out of time").
_ENDED_EARLY = ("The test run ended before reporting a result (the process exited or was killed: os._exit(), "
                "a signal, running out of memory)",
                "The test run ended before reporting a result (it ran out of time in code the per-test "
                "watchdog cannot interrupt)")


def _error_line(error: dict[str, Any]) -> str:
    """What a collection error comes to: pytest's last `E ` line of it, else its last line."""
    lines = [ln.strip() for ln in str(error.get("message", "")).splitlines() if ln.strip()]
    return next((ln.removeprefix("E").strip() for ln in reversed(lines) if ln.startswith("E ")),
                lines[-1] if lines else "")


_MISSING_MODULE = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")

_PLUGIN_NEEDED = ("async def functions are not natively supported",)


def _needs_plugins(run: RunResult) -> bool:
    """Did tests fail only for want of a pytest plugin (async tests without pytest-asyncio/anyio)?"""
    texts = [str((t.failure or {}).get("message", "")) for t in run.tests if t.failure]
    texts += [str(e.get("message", "")) for e in run.errors]
    return any(marker in text for text in texts for marker in _PLUGIN_NEEDED)


def _startup_error(run: RunResult) -> str | None:
    """What pytest printed when it stopped before running any test with a usage error (exit 4: an
    unknown option, an unreadable config, a conftest.py that fails to import) or an internal one (3)."""
    if run.rc not in (3, 4) or run.tests:
        return None
    return next((str(e.get("message") or "") for e in run.errors if e.get("startup")), None)


def _usage_error(run: RunResult) -> bool:
    """A usage error (pytest's `ERROR: …`), not a conftest.py that fails to import: with plugin
    autoload off it is most likely an addopts option of a plugin."""
    text = _startup_error(run)
    return text is not None and any(line.startswith("ERROR:") for line in text.splitlines())


# pytest's argparse synopsis before "unrecognized arguments": says nothing of the project
_USAGE_SYNOPSIS = re.compile(r"usage: \S+ \[options\][^\n]*\n?")


def repair(req: RepairRequest, *, cancel: threading.Event | None = None, progress: Progress | None = None) -> RepairResult:
    """Search for a test-validated fix of `req.module` within `req.budget_s` seconds."""
    return Repairer(req, cancel, progress).run()
