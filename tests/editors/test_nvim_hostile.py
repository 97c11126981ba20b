"""Neovim, the way people really use it: what the e2e tests (test_nvim_e2e.py) do not drive.

Real keys go through Neovim's typeahead (nvim_input, between the steps of a Lua coroutine), the
plugin in editors/nvim talks to the real `heedls serve`, on 0.11 (heedls' virtual-text front end)
and 0.12 (native vim.lsp.inline_completion):

- CTRL-C leaves Insert mode without InsertLeave: the ghost text stayed on screen in Normal mode,
  was never reported dismissed, and Tab later inserted it at its old place, elsewhere in the file;
- a <Tab> (or <C-]>) mapping of the user's own (a completion plugin's, a <Plug> mapping) was
  shadowed: without a suggestion, Tab typed a literal tab instead of running it;
- a buffer renamed with :file: Neovim reports the new name to servers only at the next write, so
  suggestions stopped until then;
- wrong options in vim.g.heedls: a Lua stack trace on attach, one on every keystroke, a crashing
  :checkhealth; no setup() for plugin managers that call it (lazy.nvim's `opts`);
- no server installed: Neovim's spawn error once for every Python buffer opened, no hint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.editors import tools
from tests.editors.test_nvim_e2e import NVIM_TESTS, _env, _events, _native, _workspace, nvim_bin  # noqa: F401

pytestmark = [pytest.mark.editor, pytest.mark.slow]

# Drives the scenario in $SCENARIO (a Lua chunk run as a coroutine: L.keys() types through the real
# typeahead and yields, L.sleep()/L.until_() wait without blocking Neovim), then writes L.out,
# v:errmsg, :messages and every vim.notify() to $RESULT as JSON and quits.
DRIVER_LUA = r"""
L = { out = {}, notes = {} }
L.heedls = require('heedls')
L.ws = vim.env.HEEDLS_WORKSPACE
local notify = vim.notify
vim.notify = function(msg, level, opts)
  table.insert(L.notes, { msg = tostring(msg), level = level })
end
function L.sleep(ms)
  local co = coroutine.running()
  vim.defer_fn(function() assert(coroutine.resume(co)) end, ms)
  coroutine.yield()
end
function L.until_(pred, ms)
  local deadline = vim.uv.now() + (ms or 10000)
  while vim.uv.now() < deadline do
    if pred() then return true end
    L.sleep(30)
  end
  return pred() and true or false
end
function L.keys(keys, ms) vim.api.nvim_input(keys); L.sleep(ms or 80) end
function L.client(buf) return vim.lsp.get_clients({ bufnr = buf, name = 'heedls' })[1] end
function L.attach(path)
  vim.cmd.edit(path)
  local buf = vim.api.nvim_get_current_buf()
  assert(L.until_(function()
    local c = L.client(buf)
    return c and c.initialized and L.heedls.inline_kind[buf] ~= nil
  end, 30000), 'heedls did not attach to ' .. path)
  return buf
end
--- Every ghost-text extmark of heedls' front end and of the native one: { row, col, text }.
function L.marks(buf)
  local found = {}
  for _, name in ipairs({ 'heedls.ghost', 'nvim.lsp.inline_completion' }) do
    local ns = vim.api.nvim_get_namespaces()[name]
    if ns then
      for _, m in ipairs(vim.api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true })) do
        local chunk = m[4].virt_text and m[4].virt_text[1]
        table.insert(found, { m[2], m[3], chunk and chunk[1] or '' })
      end
    end
  end
  return found
end
function L.ghost(buf)
  local texts = {}
  for _, m in ipairs(L.marks(buf)) do table.insert(texts, m[3]) end
  return table.concat(texts)
end
--- A new `def NAME(a, b, c):` at the end of the file and `return ` typed in its body; true once
--- ghost text follows it (a cold server may answer the first request empty: ask again).
function L.ask(buf, name)
  L.keys('<Esc>Go<CR>def ' .. name .. '(a, b, c):<CR>return ', 100)
  for _ = 1, 3 do
    if L.until_(function() return L.ghost(buf) ~= '' end, 6000) then return true end
    L.keys('<Esc>a', 50) -- Insert mode again: the native front end asks again; the fallback on typing
    L.keys(' <BS>', 50)
  end
  return false
end
function L.mode() return vim.api.nvim_get_mode().mode end
local function finish()
  L.out.errmsg = vim.v.errmsg
  L.out.messages = vim.api.nvim_exec2('messages', { output = true }).output
  L.out.notes = L.notes
  local f = assert(io.open(vim.env.RESULT, 'w'))
  f:write(vim.json.encode(L.out))
  f:close()
  vim.cmd('qa!')
end
local scenario = assert(loadfile(vim.env.SCENARIO))
local co = coroutine.create(function()
  local ok, err = xpcall(scenario, debug.traceback)
  if not ok then L.out.error = tostring(err) end
  finish()
end)
vim.schedule(function()
  local ok, err = coroutine.resume(co)
  if not ok then
    L.out.error = tostring(err)
    finish()
  end
end)
"""


def _session(tmp_path: Path, nvim: Path, scenario: str, *, options: Any = None, timeout: float = 90,
             **extra_env: str) -> dict[str, Any]:
    """Runs `scenario` (Lua) in headless Neovim on a fresh copy of the e2e workspace; what it saw."""
    workspace, data = _workspace(tmp_path), tmp_path / "data"
    data.mkdir()
    driver, script, result = tmp_path / "driver.lua", tmp_path / "scenario.lua", tmp_path / "result.json"
    driver.write_text(DRIVER_LUA)
    script.write_text(scenario)
    env = _env(data, workspace, SCENARIO=str(script), RESULT=str(result), **extra_env)
    if options is not None:
        env["HEEDLS_TEST_OPTIONS"] = json.dumps(options)
    run = tools.run([str(nvim), "--headless", "-u", str(NVIM_TESTS / "init.lua"), "-c", f"luafile {driver}"],
                    timeout=timeout, cwd=workspace, env=env)
    assert result.exists(), f"nvim wrote no result (exit {run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    out: dict[str, Any] = json.loads(result.read_text())
    out["workspace"], out["data"] = workspace, data
    assert not out.get("error"), out["error"]
    return out


def _no_errors(out: dict[str, Any]) -> None:
    assert out["errmsg"] == "", out["errmsg"]
    assert "Error" not in out["messages"] and "stack traceback" not in out["messages"], out["messages"]


# -- one session per Neovim: keys as a person types them ---------------------------------------------

KEYS_LUA = r"""
-- The user's own mappings, as a completion or snippet plugin makes them, before heedls attaches.
vim.keymap.set('i', '<Tab>', function() vim.g.user_tab = (vim.g.user_tab or 0) + 1 end, { desc = 'user tab' })
vim.keymap.set('i', '<C-]>', '<Plug>(user-dismiss)') -- recursive: <Plug> must be mapped again
vim.keymap.set('i', '<Plug>(user-dismiss)', '<Cmd>let g:user_plug = get(g:, "user_plug", 0) + 1<CR>')
local buf = L.attach(L.ws .. '/shapes.py')

-- CTRL-C with a suggestion on screen (no InsertLeave)
local r = {}
r.shown = L.ask(buf, 'ctrlc')
r.row = vim.api.nvim_win_get_cursor(0)[1] - 1
r.before = L.marks(buf)
L.keys('<C-c>', 500)
r.mode = L.mode()
r.after = L.marks(buf)
L.keys('kkA', 300) -- elsewhere, Insert mode again
r.elsewhere = L.marks(buf)
L.keys('<Tab>', 400)
L.keys('<Esc>', 100)
r.lines = vim.api.nvim_buf_get_lines(buf, r.row - 2, r.row + 1, false)
L.out.ctrl_c = r

-- the user's <Tab> and <C-]> when no suggestion is shown; heedls' when one is
r = {}
L.keys('<Esc>Go<CR>x = 1', 100)
L.until_(function() return false end, 400)
r.ghost_before = L.ghost(buf)
vim.g.user_tab, vim.g.user_plug = 0, 0
L.keys('<Tab>', 300)
L.keys('<C-]>', 300)
r.line = vim.api.nvim_get_current_line()
r.user_tab, r.user_plug = vim.g.user_tab, vim.g.user_plug
r.shown = L.ask(buf, 'tabbed')
r.ghost = L.ghost(buf)
L.keys('<Tab>', 500)
r.accepted_line = vim.api.nvim_get_current_line()
r.user_tab_after_accept = vim.g.user_tab
L.keys('<Esc>', 100)
L.out.user_keys = r

-- a buffer renamed with :file: suggestions go on before it is written
r = {}
vim.cmd('silent write')
vim.cmd('file ' .. L.ws .. '/renamed.py')
r.shown = L.ask(buf, 'renamed')
r.ghost = L.ghost(buf)
L.keys('<Esc>', 100)
vim.cmd('silent write')
r.shown_after_write = L.ask(buf, 'written')
L.keys('<Esc>', 100)
L.out.renamed = r
L.sleep(1000) -- the rejections reach the server's store
"""


@pytest.fixture(scope="module")
def keys_session(tmp_path_factory: pytest.TempPathFactory,
                 nvim_bin: tuple[Path, tuple[int, int]]) -> dict[str, Any]:  # noqa: F811
    nvim, version = nvim_bin
    out = _session(tmp_path_factory.mktemp("nvim-keys"), nvim, KEYS_LUA)
    out["native"] = _native(version)
    return out


def test_ctrl_c_takes_the_suggestion_off_the_screen(keys_session: dict[str, Any]) -> None:
    r = keys_session["ctrl_c"]
    assert r["shown"] and r["before"], r
    assert r["mode"] == "n"
    assert r["after"] == [], f"ghost text left on screen in Normal mode after CTRL-C: {r['after']}"
    assert r["elsewhere"] == [], r["elsewhere"]
    # Tab two lines up does what Tab does there (the user's mapping): nothing inserted anywhere
    assert r["lines"][-1] == "    return ", f"the old suggestion was inserted at its old place: {r['lines']}"
    events = _events(keys_session["workspace"], keys_session["data"])
    left = [e for e in events if e["prefix"] and e["prefix"].rstrip().endswith("def ctrlc(a, b, c):\n    return")]
    assert left and left[-1]["outcome"] == "rejected" and left[-1]["reason"] == "dismissed", left or events
    _no_errors(keys_session)


def test_users_own_tab_mapping_runs_when_no_suggestion(keys_session: dict[str, Any]) -> None:
    r = keys_session["user_keys"]
    assert r["ghost_before"] == "", r  # `x = 1`: nothing to suggest, the keys are the user's
    assert r["user_tab"] == 1, f"the user's <Tab> mapping did not run: {r}"
    assert r["user_plug"] == 1, f"the user's <C-]> -> <Plug> mapping did not run: {r}"
    assert r["line"].endswith("x = 1"), f"a literal key was typed instead: {r['line']!r}"
    # with a suggestion on screen, Tab is heedls' accept (and not the user's mapping too)
    assert r["shown"] and r["accepted_line"].endswith("return " + r["ghost"]), r
    assert r["user_tab_after_accept"] == 1, r
    _no_errors(keys_session)


def test_renamed_buffer_keeps_its_suggestions(keys_session: dict[str, Any]) -> None:
    r = keys_session["renamed"]
    assert r["shown"], f"no suggestion after :file (the server was not told the new name): {r}"
    assert r["shown_after_write"], r
    _no_errors(keys_session)


# -- options -----------------------------------------------------------------------------------------

OPTIONS_LUA = r"""
local buf = L.attach(L.ws .. '/shapes.py')
L.out.kind = L.heedls.inline_kind[buf]
L.out.shown = L.ask(buf, 'opts')
L.out.ghost = L.ghost(buf)
L.keys('<Tab>', 500) -- the default key, the wrong one left out
L.out.line = vim.api.nvim_get_current_line()
L.keys('<Esc>', 100)
vim.cmd('checkhealth heedls')
L.out.health = vim.api.nvim_buf_get_lines(0, 0, -1, false)
"""


def test_wrong_options_are_one_warning_each_not_errors(tmp_path: Path,
                                                       nvim_bin: tuple[Path, tuple[int, int]]) -> None:  # noqa: F811
    nvim, _ = nvim_bin
    options = {"settings": {"gate": {"mode": "off"}}, "bogus": 1,
               "inline": {"debounce_ms": "fast", "accept_key": 1, "acceptkey": "<C-y>"}}
    out = _session(tmp_path, nvim, OPTIONS_LUA, options=options)
    _no_errors(out)  # was a stack trace on attach, then one on every keystroke
    assert out["shown"] and out["line"].endswith("return " + out["ghost"]), out
    warnings = [n["msg"] for n in out["notes"] if n["msg"].startswith("heedls: ")]
    for name in ("inline.debounce_ms", "inline.accept_key", "inline.acceptkey", "vim.g.heedls.bogus"):
        assert sum(name in w for w in warnings) == 1, (name, warnings)
    health = "\n".join(out["health"])
    assert "Failed to run healthcheck" not in health, health
    assert "debounce_ms must be a number" in health and "unknown option vim.g.heedls.inline.acceptkey" in health


def test_checkhealth_survives_options_of_the_wrong_shape(tmp_path: Path,
                                                         nvim_bin: tuple[Path, tuple[int, int]]) -> None:  # noqa: F811
    nvim, _ = nvim_bin
    (tmp_path / "x.py").write_text("x = 1\n")
    scenario = r"""
L.out.reports = {}
for _, value in ipairs({ 'oops', { inline = 'yes' } }) do
  vim.g.heedls = value
  vim.cmd('checkhealth heedls')
  table.insert(L.out.reports, table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n'))
  vim.cmd('bwipeout!')
end
"""
    out = _session(tmp_path, nvim, scenario)
    reports = out["reports"]
    assert len(reports) == 2, out
    assert "Failed to run healthcheck" not in reports[0] + reports[1], reports
    assert "vim.g.heedls must be a table" in reports[0], reports[0]
    assert "vim.g.heedls.inline must be a table" in reports[1], reports[1]


SETUP_LUA = r"""
local heedls = require('heedls')
heedls.setup({ inline = { debounce_ms = 10 } })
heedls.setup({ inline = { debounce_ms = 10 } }) -- twice: harmless
heedls.setup('not a table')
local buf = L.attach(L.ws .. '/shapes.py')
local function mode()
  local s = heedls.request('heedls/status', vim.empty_dict(), { bufnr = buf, wait = 5000 })
  return s and s.gate and s.gate.mode
end
L.out.before = mode()
heedls.setup({ settings = { gate = { mode = 'stage1' } } }) -- reaches the running server
L.until_(function() return mode() == 'stage1' end, 5000)
L.out.after = mode()
L.out.options = heedls.options().inline.debounce_ms
L.out.shown = L.ask(buf, 'setup')
L.keys('<Esc>', 100)
"""


def test_setup_for_plugin_managers(tmp_path: Path, nvim_bin: tuple[Path, tuple[int, int]]) -> None:  # noqa: F811
    nvim, _ = nvim_bin
    out = _session(tmp_path, nvim, SETUP_LUA, options={})
    assert (out["before"], out["after"]) == ("cascade", "stage1"), out
    assert out["options"] == 10 and out["shown"], out
    warnings = [n["msg"] for n in out["notes"] if n["msg"].startswith("heedls: ")]
    assert len(warnings) == 1 and "setup() takes a table" in warnings[0], warnings
    _no_errors(out)


# -- no server -----------------------------------------------------------------------------------------

def test_missing_server_is_one_message_not_one_per_buffer(tmp_path: Path,
                                                         nvim_bin: tuple[Path, tuple[int, int]]) -> None:  # noqa: F811
    nvim, _ = nvim_bin
    scenario = r"""
for _, name in ipairs({ 'shapes.py', 'stats.py', 'test_stats.py' }) do
  vim.cmd.edit(L.ws .. '/' .. name)
  L.sleep(300)
end
L.keys('Go<CR>x = 1<Tab><Esc>', 300)
L.out.line = vim.api.nvim_get_current_line()
L.out.clients = #vim.lsp.get_clients()
"""
    out = _session(tmp_path, nvim, scenario, PATH="/usr/bin:/bin")
    notes = [n["msg"] for n in out["notes"]]
    assert not [n for n in notes if "Spawning language server" in n], notes
    told = [n for n in notes if n.startswith("heedls: ")]
    assert len(told) == 1 and "checkhealth heedls" in told[0], notes
    assert out["clients"] == 0 and out["line"].rstrip().endswith("x = 1"), out
    _no_errors(out)
