#!/usr/bin/env bash
# Installs everything the tests need (the package with its test extras, and the real editors for
# the end-to-end tests) and runs the whole suite. README's second command and .ci/run run this.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -U pip
.venv/bin/pip install -q --disable-pip-version-check -e '.[test,train]'
if [ -f scripts/install-editor-deps.sh ]; then
  bash scripts/install-editor-deps.sh
fi
export PATH="$PWD/.venv/bin:$PATH"
# Byte-compile once, even where PYTHONDONTWRITEBYTECODE is set (this machine's images set it):
# without cached bytecode every `python -m heedls` the tests start compiled heedls again, and
# every pytest they start (check --tests, the repair, the server's test runs) re-wrote the asserts
# of its plugins' modules (pytest rewrites a plugin's whole distribution: hypothesis, pytest-lsp),
# 2.9 s of CPU a start instead of 1.1 s. A collection writes those rewrites and the tests' own.
env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m compileall -q -j 0 analyzers server heedls > /dev/null || true
env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m pytest --collect-only -q -p no:cacheprovider > /dev/null 2>&1 || true  # errors: in the run below
# pytest exits 5 when it collected nothing: that fails the run, as it should.
if [ "$#" -gt 0 ]; then  # a part of the suite, as asked: one pytest, in this process
  exec .venv/bin/python -m pytest "$@"
fi
# The whole suite in two passes. Most tests wait on subprocesses and servers, so two workers (one
# per core, at most 4) take about half the time. The editor end-to-end tests drive real editors by
# keystrokes and screenshots, and a loaded machine makes them time out, so they run after, alone.
rest=0 editors=0
# --durations: the slowest tests, in every CI log, for keeping the suite within its ~15 minutes.
.venv/bin/python -m pytest -m "not editor" -n auto --maxprocesses 4 --durations=20 || rest=$?
.venv/bin/python -m pytest -m editor --durations=10 || editors=$?
echo "heedls tests: pytest exited $rest for the tests outside the editors, $editors for the editor end-to-end tests"
[ "$rest" -eq 0 ] && [ "$editors" -eq 0 ]
