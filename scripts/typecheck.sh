#!/usr/bin/env bash
# mypy --strict over the core. mypy cannot follow setup.py's folder mapping (server/ is installed
# as heedls.server), so it checks a temporary tree of symlinks laid out as the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/heedls"
cp heedls/*.py "$tree/heedls/"
ln -s "$root/server" "$tree/heedls/server"
ln -s "$root/analyzers" "$tree/heedls/analyzers"
cd "$tree"
targets=("${@:-heedls/analyzers heedls/server/pipeline heedls/server/acceptance heedls/server/providers heedls/server/telemetry heedls/server/config.py heedls/server/events.py heedls/server/services.py heedls/server/handoff.py heedls/server/watched.py heedls/server/files.py heedls/server/collector.py heedls/server/positions.py heedls/server/framing.py heedls/server/app.py heedls/server/features}")
# shellcheck disable=SC2068
# The pytest plugin and the repair runner run inside the *workspace* interpreter (any Python 3,
# no heedls): they stay dependency-free scripts and are not held to the strict profile.
exec "$root/.venv/bin/mypy" --strict --config-file "$root/pyproject.toml" \
  --exclude "pytest_plugin/" --exclude "repair/runner/" ${targets[@]}
