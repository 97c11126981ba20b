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
# pytest exits 5 when it collected nothing: that fails the run, as it should.
exec .venv/bin/python -m pytest "$@"
