-- heedls for Neovim: server command, settings, commands and the inline-suggestion front end.
-- Options: vim.g.heedls = { cmd = {...}, settings = {...}, inline = {...} } (see :help heedls).
local M = {}

local defaults = {
  cmd = nil, -- list: the server command; nil = find it
  settings = {}, -- forwarded to the server (camelCase keys, server section names)
  inline = {
    enabled = true,
    native = nil, -- nil: native vim.lsp.inline_completion when Neovim has it (0.12+), else the fallback
    debounce_ms = 30, -- the server debounces too; this only coalesces keystrokes
    accept_key = '<Tab>',
    dismiss_key = '<C-]>',
    next_key = '<M-]>', -- ask again (manual trigger)
  },
}

-- The type each option must have; a value of another type is reported (once, and in
-- :checkhealth heedls) and its default used instead, so a typo cannot break every Python buffer.
local option_types = {
  cmd = 'list of strings',
  settings = 'table',
  inline = {
    enabled = 'boolean',
    native = 'boolean',
    debounce_ms = 'number',
    accept_key = 'string',
    dismiss_key = 'string',
    next_key = 'string',
  },
}

local function type_ok(value, want)
  if want == 'list of strings' then
    if type(value) ~= 'table' or #value == 0 or not vim.islist(value) then
      return false
    end
    for _, part in ipairs(value) do
      if type(part) ~= 'string' or part == '' then
        return false
      end
    end
    return true
  elseif want == 'number' then
    return type(value) == 'number' and value >= 0
  elseif want == 'string' then
    return type(value) == 'string' and value ~= ''
  elseif want == 'table' then
    return type(value) == 'table' and (next(value) == nil or not vim.islist(value))
  end
  return type(value) == want
end

local function describe(value)
  return type(value) == 'string' and string.format('%q', value) or vim.inspect(value)
end

--- What is wrong with vim.g.heedls (the last time options() read it): one line per problem.
---@type string[]
M.option_problems = {}
local warned = {}

--- The options: vim.g.heedls over the defaults, each of the wrong type or unknown left out
--- (reported once by vim.notify, and by :checkhealth heedls).
function M.options()
  local user = vim.g.heedls
  local opts = vim.deepcopy(defaults)
  local problems = {}
  local function problem(fmt, ...)
    table.insert(problems, string.format(fmt, ...))
  end
  if user ~= nil and type(user) ~= 'table' then
    problem('vim.g.heedls must be a table, got %s: ignored', describe(user))
    user = {}
  end
  for key, value in pairs(user or {}) do
    local want = option_types[key]
    if value == vim.NIL then -- JSON null: the default
      value = nil
    end
    if want == nil then
      problem('unknown option vim.g.heedls.%s: ignored', tostring(key))
    elseif value == nil then -- luacheck: ignore 542
    elseif type(want) == 'table' then
      if type(value) ~= 'table' then
        problem('vim.g.heedls.%s must be a table, got %s: ignored', key, describe(value))
      else
        for sub, subvalue in pairs(value) do
          local subwant = want[sub]
          if subvalue == vim.NIL then
            subvalue = nil
          end
          if subwant == nil then
            problem('unknown option vim.g.heedls.%s.%s: ignored', key, tostring(sub))
          elseif subvalue ~= nil and not type_ok(subvalue, subwant) then
            problem('vim.g.heedls.%s.%s must be a %s%s, got %s: using %s', key, sub, subwant,
              subwant == 'number' and ' >= 0' or '', describe(subvalue), describe(defaults[key][sub]))
          else
            opts[key][sub] = subvalue
          end
        end
      end
    elseif not type_ok(value, want) then
      problem('vim.g.heedls.%s must be a %s, got %s: ignored', key,
        want == 'list of strings' and "list of strings such as { 'heedls', 'serve' }" or want, describe(value))
    else
      opts[key] = vim.deepcopy(value)
    end
  end
  table.sort(problems)
  M.option_problems = problems
  for _, text in ipairs(problems) do
    if not warned[text] then
      warned[text] = true
      vim.schedule(function()
        vim.notify('heedls: ' .. text .. ' (see :help heedls-options)', vim.log.levels.WARN)
      end)
    end
  end
  return opts
end

--- For plugin managers that call setup(opts) (lazy.nvim's `opts`): merges opts into vim.g.heedls,
--- the plugin's one place for options; calling it again merges again. Server settings reach the
--- servers already running, and the ones started later; inline options apply to the buffers
--- attached afterwards.
---@param opts? table
function M.setup(opts)
  if opts ~= nil and type(opts) ~= 'table' then
    vim.notify('heedls: setup() takes a table of options, got ' .. describe(opts) .. ' (see :help heedls-options)',
      vim.log.levels.WARN)
    return
  end
  local current = type(vim.g.heedls) == 'table' and vim.g.heedls or {}
  vim.g.heedls = vim.tbl_deep_extend('force', current, opts or {})
  local settings = M.server_settings()
  if vim.lsp.config and (opts or {}).settings ~= nil then
    vim.lsp.config('heedls', { init_options = settings, settings = { heedls = settings } })
    for _, client in ipairs(vim.lsp.get_clients({ name = 'heedls' })) do
      client.settings = vim.tbl_deep_extend('force', client.settings or {}, { heedls = settings })
      client:notify('workspace/didChangeConfiguration', { settings = client.settings })
    end
  end
end

local function executable(path)
  return path and vim.fn.executable(path) == 1
end

--- The command that starts the server, and where it came from.
---@return string[] cmd, string source
function M.resolve_cmd(root)
  local opts = M.options()
  if type(opts.cmd) == 'table' and #opts.cmd > 0 then
    return opts.cmd, 'vim.g.heedls.cmd'
  end
  if executable('heedls') then
    return { vim.fn.exepath('heedls'), 'serve' }, 'PATH'
  end
  root = root or vim.fs.root(0, { 'pyproject.toml', 'setup.py', '.git' }) or vim.fn.getcwd()
  for _, venv in ipairs({ '.venv', 'venv' }) do
    local python = vim.fs.joinpath(root, venv, 'bin', 'python')
    if executable(python) then
      -- -P: the project's own directory off sys.path (a `heedls` folder there would shadow the package)
      return { python, '-P', '-m', 'heedls', 'serve' }, venv
    end
  end
  return { 'heedls', 'serve' }, 'not found'
end

local missing_told = {}

--- Whether the server command for `root` can start (its program exists and is executable); when
--- not, says so once per command. config: the resolved vim.lsp.config.heedls (its cmd may be a
--- user's list instead of heedls' function).
function M.can_start(root, config)
  local cmd, source
  if config and type(config.cmd) == 'table' then
    cmd, source = config.cmd, "vim.lsp.config('heedls').cmd"
  else
    cmd, source = M.resolve_cmd(root)
  end
  local exe = cmd[1]
  if source ~= 'not found' and type(exe) == 'string' and vim.fn.executable(exe) == 1 then
    return true
  end
  local key = table.concat(cmd, ' ')
  if not missing_told[key] then
    missing_told[key] = true
    local why = source == 'not found' and 'heedls server not found (no vim.g.heedls.cmd, no heedls on $PATH, '
        .. 'no .venv/venv in the project)'
      or string.format('%s (from %s) is not executable', tostring(exe), source)
    vim.schedule(function()
      vim.notify('heedls: ' .. why .. ': not started. Run :checkhealth heedls', vim.log.levels.WARN)
    end)
  end
  return false
end

function M.server_settings()
  local settings = vim.deepcopy(M.options().settings or {})
  if vim.tbl_isempty(settings) then
    return vim.empty_dict() -- an empty Lua table is sent as [] (a list), not {}
  end
  return settings
end

function M.capabilities()
  -- 0.11's client does not announce inline completion; the fallback requests it itself.
  return { textDocument = { inlineCompletion = { dynamicRegistration = false } } }
end

---@return vim.lsp.Client?
function M.client(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr or 0, name = 'heedls' })[1]
    or vim.lsp.get_clients({ name = 'heedls' })[1]
end

local function notify(msg, level)
  vim.notify('heedls: ' .. msg, level or vim.log.levels.INFO)
end

--- A request that never blocks the editor: opts.on_result(result, err) runs when the server
--- answers. Scripts and tests may pass opts.wait (ms) to wait for the answer and get result, err
--- back; user commands never do, so a slow or stopped server cannot freeze Neovim.
---@param opts? { bufnr?: integer, on_result?: fun(result: any, err: string?), wait?: integer }
function M.request(method, params, opts)
  opts = opts or {}
  local client = M.client(opts.bufnr)
  if not client then
    local err = 'heedls is not attached to this buffer'
    if opts.on_result then
      opts.on_result(nil, err)
    end
    return nil, err
  end
  local done, result, problem = false, nil, nil
  client:request(method, params, function(err, res)
    done, result = true, res
    problem = err and (err.message or vim.inspect(err)) or nil
    if opts.on_result then
      opts.on_result(result, problem)
    end
  end, opts.bufnr or 0)
  if opts.wait then
    if not vim.wait(opts.wait, function() return done end, 20) then
      return nil, 'no answer from the server (timeout)'
    end
    return result, problem
  end
  return nil, nil
end

local function cursor_params(bufnr)
  local client = M.client(bufnr)
  return vim.lsp.util.make_position_params(0, client and client.offset_encoding or 'utf-16')
end

-- Inline suggestions ---------------------------------------------------------------------------

M.enabled = true

function M.use_native()
  local native = M.options().inline.native
  if native == nil then
    native = vim.lsp.inline_completion ~= nil
  end
  return native and vim.lsp.inline_completion ~= nil
end

--- Which front end draws the suggestions in each buffer: 'native' (vim.lsp.inline_completion,
--- 0.12+) or 'fallback' (heedls.inline's virtual text).
---@type table<integer, 'native'|'fallback'>
M.inline_kind = {}

local function accept_id(item)
  local cmd = item and item.command
  if type(cmd) == 'table' and cmd.command == 'heedls.accept' and type(cmd.arguments) == 'table' then
    return cmd.arguments[1]
  end
end

--- The last item the native front end accepted or dismissed through heedls' keys:
--- { action = 'accepted'|'dismissed', id = suggestion id?, insert_text = string|table }.
M.native_last = nil

--- Native front end: the heedls suggestion it has on screen in each buffer (its id), reported
--- `shown` when it was drawn and not decided yet.
---@type table<integer, string>
M.native_shown = {}

local function first_line(insert_text)
  local text = type(insert_text) == 'table' and insert_text.value or insert_text
  return type(text) == 'string' and vim.split(text, '\n', { plain = true })[1] or nil
end

-- Native front end: vim.lsp.inline_completion draws the first item of an answer as it handles it
-- and has no "displayed" event of its own. heedls' client sees its own answers: once one is
-- handled, if the native front end's virtual text is on screen and is the end of heedls' first
-- item (the typed part is skipped; another server's item would not match), that item was drawn.
-- An answer that draws another suggestion, or none, replaced the one on screen: a rejection
-- ("superseded", as VS Code reports it; the native front end cannot tell typing from moving).
-- Typing through keeps the id: nothing to report.
local function native_drawn(client, bufnr, result)
  local ns = vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion']
  local items = type(result) == 'table' and (result.items or result) or {}
  local item = items[1]
  local id = accept_id(item)
  local mark = ns and vim.api.nvim_buf_is_valid(bufnr)
    and vim.api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true, limit = 1 })[1]
  local virt = mark and mark[4] and mark[4].virt_text and mark[4].virt_text[1]
  local line = item and first_line(item.insertText)
  local drawn = (id and virt and line and vim.endswith(line, virt[1])) and id or nil
  local before = M.native_shown[bufnr]
  if drawn == before then
    return
  end
  M.native_shown[bufnr] = drawn
  if before then
    client:notify('heedls/suggestionRejected', { id = before, reason = 'superseded' })
  end
  if drawn then
    client:notify('heedls/suggestionShown', { id = drawn })
  end
end

-- heedls' own client, once: every textDocument/inlineCompletion answer also goes to native_drawn
-- after the native front end has handled (and drawn) it.
local function watch_native_answers(client)
  if client._heedls_native_watch then
    return
  end
  client._heedls_native_watch = true
  local request = client.request
  client.request = function(self, method, params, handler, bufnr)
    if method == 'textDocument/inlineCompletion' and type(handler) == 'function' then
      local handle = handler
      handler = function(err, result, ctx, ...)
        handle(err, result, ctx, ...)
        -- No answer (an error; null: a newer request answers instead), or one the native front end
        -- ignored (not in Insert mode): it left the screen as it was, and so do we.
        if err or result == nil or not vim.startswith(vim.api.nvim_get_mode().mode, 'i') then
          return
        end
        local ok, problem = pcall(native_drawn, self, ctx and ctx.bufnr or bufnr or 0, result)
        if not ok then
          vim.schedule(function() notify('could not follow a native suggestion: ' .. tostring(problem), vim.log.levels.DEBUG) end)
        end
      end
    end
    return request(self, method, params, handler, bufnr)
  end
end

-- Native front end: take the displayed item through get() and tell the server it was shown;
-- accepted, get() inserts it (its command `heedls.accept` reports that); dismissed, on_accept
-- declines it (vim.lsp.inline_completion has no dismiss of its own) and the rejection is reported.
local function native_take(bufnr, accept)
  if bufnr == nil or bufnr == 0 then
    bufnr = vim.api.nvim_get_current_buf() -- the key for native_shown (the API's bufnr? is optional)
  end
  return vim.lsp.inline_completion.get({
    bufnr = bufnr,
    on_accept = function(item)
      local client = vim.lsp.get_client_by_id(item.client_id)
      local id = accept_id(item)
      if client and client.name == 'heedls' and id then
        if M.native_shown[bufnr] ~= id then
          client:notify('heedls/suggestionShown', { id = id })
        end
        if not accept then
          client:notify('heedls/suggestionRejected', { id = id, reason = 'dismissed' })
        end
      end
      M.native_shown[bufnr] = nil
      M.native_last = { action = accept and 'accepted' or 'dismissed', id = id, insert_text = item.insert_text }
      return accept and item or nil
    end,
  })
end

--- Native front end: accept the displayed item. Returns false when nothing is displayed.
function M.native_accept(bufnr)
  return native_take(bufnr, true)
end

--- Native front end: hide the displayed item without inserting it, and report the dismissal.
function M.native_dismiss(bufnr)
  return native_take(bufnr, false)
end

-- Insert-mode keys ------------------------------------------------------------------------------

-- What a key did in a buffer before heedls mapped it there (the buffer's own mapping; false: none).
---@type table<integer, table<string, table|false>>
local replaced = {}

local function is_ours(m)
  return type(m) == 'table' and m.buffer == 1 and type(m.desc) == 'string' and vim.startswith(m.desc, 'heedls: ')
end

--- The mapping `key` has without heedls' own: the buffer-local one it replaced, else the global one.
local function other_mapping(bufnr, key)
  local own = replaced[bufnr] and replaced[bufnr][key]
  if own then
    return own
  end
  local raw = vim.keycode(key)
  for _, m in ipairs(vim.api.nvim_get_keymap('i')) do
    if m.lhs and vim.keycode(m.lhs) == raw then
      return m
    end
  end
end

--- Keys that do what `m` (a maparg()/nvim_get_keymap() dict) does, from inside an <expr> mapping.
local function keys_of(m, key)
  if not m then
    return vim.keycode(key)
  end
  local keys
  if m.callback and m.expr ~= 1 then
    -- run outside the <expr> (it may change the buffer), where the key would have run it
    M._other_callback = m.callback
    return vim.keycode("<Cmd>lua require('heedls')._run_other()<CR>")
  elseif m.callback then
    keys = m.callback()
  elseif m.expr == 1 then
    keys = vim.api.nvim_eval(m.rhs)
  else
    keys = m.rhs
  end
  if type(keys) ~= 'string' then
    return ''
  end
  if m.expr ~= 1 or m.replace_keycodes == 1 then
    keys = vim.keycode(keys)
  end
  if m.noremap ~= 1 and keys ~= '' and not vim.startswith(keys, vim.keycode(key)) then
    vim.api.nvim_feedkeys(keys, 'im', false) -- mapped again, as a recursive mapping's keys are
    return ''
  end
  return keys
end

function M._run_other()
  local callback = M._other_callback
  M._other_callback = nil
  if callback then
    callback()
  end
end

--- Map `key` in Insert mode in `bufnr` for heedls: fn() (run where the buffer may not change)
--- returns true when heedls handled the key, a function to run next (outside that lock) when it
--- takes the key, or false: then the key does what it did before (the buffer's or the global
--- mapping of it — a completion plugin's <Tab> — else the key itself).
function M.map_insert_key(bufnr, key, desc, fn)
  replaced[bufnr] = replaced[bufnr] or {}
  local before = vim.api.nvim_buf_call(bufnr, function() return vim.fn.maparg(key, 'i', false, true) end)
  if not is_ours(before) then
    replaced[bufnr][key] = (type(before) == 'table' and before.buffer == 1) and before or false
  end
  vim.keymap.set('i', key, function()
    local took = fn()
    if type(took) == 'function' then
      M._other_callback = took
      return vim.keycode("<Cmd>lua require('heedls')._run_other()<CR>")
    elseif took then
      return ''
    end
    return keys_of(other_mapping(bufnr, key), key)
  end, { buffer = bufnr, expr = true, replace_keycodes = false, desc = 'heedls: ' .. desc })
end

--- Native front end: leaving Insert mode without InsertLeave (CTRL-C, CTRL-O) leaves the native
--- suggestion on screen and current (Tab would insert it at its old place later): take it off.
local function leave_insert_native(bufnr)
  if not vim.startswith(vim.v.event.new_mode or '', 'i') then
    M.native_dismiss(bufnr)
  end
end

function M.on_attach(client, bufnr)
  local opts = M.options().inline
  if not opts.enabled then
    return
  end
  if M.use_native() then
    M.inline_kind[bufnr] = 'native'
    watch_native_answers(client)
    vim.lsp.inline_completion.enable(M.enabled, { bufnr = bufnr })
    -- Leaving Insert mode takes the native suggestion off the screen (as Esc does in the fallback
    -- front end and in VS Code): a dismissal of the one on display.
    local group = vim.api.nvim_create_augroup('heedls-native-' .. bufnr, { clear = true })
    vim.api.nvim_create_autocmd('ModeChanged', {
      group = group,
      buffer = bufnr,
      callback = function() leave_insert_native(bufnr) end,
    })
    vim.api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
      group = group,
      buffer = bufnr,
      callback = function()
        local id = M.native_shown[bufnr]
        M.native_shown[bufnr] = nil
        local heedls = id and M.client(bufnr)
        if heedls then
          heedls:notify('heedls/suggestionRejected', { id = id, reason = 'dismissed' })
        end
      end,
    })
    M.map_insert_key(bufnr, opts.accept_key, 'accept suggestion', function() return M.native_accept(bufnr) end)
    M.map_insert_key(bufnr, opts.dismiss_key, 'dismiss suggestion', function() return M.native_dismiss(bufnr) end)
    vim.keymap.set('i', opts.next_key, function() vim.lsp.inline_completion.select({ bufnr = bufnr }) end,
      { buffer = bufnr, desc = 'heedls: next suggestion' })
  else
    M.inline_kind[bufnr] = 'fallback'
    require('heedls.inline').attach(client, bufnr, opts)
  end
end

function M.toggle(enabled)
  if enabled == nil then
    enabled = not M.enabled
  end
  M.enabled = enabled
  local client = M.client()
  if client then
    client:request('workspace/executeCommand', { command = 'heedls.toggleSuggestions', arguments = { enabled } },
      function() end)
  end
  if M.use_native() then
    -- Per buffer, as on_attach enabled it: a global enable(true) would switch native inline
    -- completion on in every buffer, for every client (another server's too).
    for bufnr, kind in pairs(M.inline_kind) do
      if kind == 'native' and vim.api.nvim_buf_is_valid(bufnr) then
        vim.lsp.inline_completion.enable(enabled, { bufnr = bufnr })
      end
    end
  elseif not enabled then
    require('heedls.inline').dismiss_all()
  end
  notify('inline suggestions ' .. (enabled and 'on' or 'off'))
  return enabled
end

-- Status ---------------------------------------------------------------------------------------

M.last_status = nil

--- The `heedls/status` result, waiting up to opts.wait ms (default 3000: for scripts and
--- :checkhealth); with opts.on_result it only asks and returns at once.
function M.status(opts)
  opts = opts or {}
  local on_result = opts.on_result
  local result = M.request('heedls/status', {}, {
    wait = not on_result and (opts.wait or 3000) or nil,
    on_result = function(res)
      if res then
        M.last_status = res
      end
      if on_result then
        on_result(res)
      end
    end,
  })
  return result
end

M.status_every_ms = 5000
local status_timer = nil

--- For statuslines: "heedls", "heedls 23% hidden", "heedls off". The first call starts a timer
--- that asks the server for fresh numbers every `status_every_ms` (in the background, redrawing
--- the statuslines when they come), so the share follows the session without :HeedlsStatus.
function M.statusline()
  if not M.client() then
    return ''
  end
  if status_timer == nil then
    status_timer = (vim.uv or vim.loop).new_timer()
    status_timer:start(0, M.status_every_ms, vim.schedule_wrap(function()
      if M.client() then
        M.status({
          on_result = function(res)
            if res then
              vim.schedule(function()
                vim.cmd.redrawstatus()
              end)
            end
          end,
        })
      end
    end))
  end
  if not M.enabled then
    return 'heedls off'
  end
  local gate = M.last_status and M.last_status.gate
  if gate and type(gate.hidden_share) == 'number' and (gate.requests or 0) > 0 then
    return string.format('heedls %d%% hidden', math.floor(gate.hidden_share * 100 + 0.5))
  end
  return 'heedls'
end

function M.show_status()
  M.status({
    on_result = function(s)
      if not s then
        return notify('no status (server not attached?)', vim.log.levels.WARN)
      end
      local gate = s.gate or {}
      notify(string.format('%s, provider %s, gate %s: %d requests, %d skipped, %d hidden',
        s.enabled and 'on' or 'off', tostring(s.provider), tostring(gate.mode), gate.requests or 0,
        gate.skipped or 0, gate.hidden or 0))
    end,
  })
end

-- Explain / fix / tests / report ---------------------------------------------------------------

--- Explain the problem at the cursor in a float when the server answers; opts.wait (ms) waits
--- for it and returns the items (scripts, tests).
function M.explain(opts)
  opts = opts or {}
  local items, answered = nil, false
  local function show(result, err)
    answered = true
    if err then
      return notify(err, vim.log.levels.ERROR)
    end
    items = result and result.explanations or {}
    if #items == 0 then
      return notify('no problem to explain at the cursor')
    end
    local lines = {}
    for _, e in ipairs(items) do
      vim.list_extend(lines, { '## ' .. (e.message or 'Problem'), '' })
      vim.list_extend(lines, vim.split(e.explanation or '', '\n', { plain = true }))
      table.insert(lines, '')
    end
    vim.lsp.util.open_floating_preview(lines, 'markdown', { border = 'rounded', focus_id = 'heedls-explain' })
  end
  local _, err = M.request('heedls/explain', cursor_params(), { on_result = show, wait = opts.wait })
  if err and not answered then -- timed out waiting
    notify(err, vim.log.levels.ERROR)
  end
  return items
end

function M.fix(opts)
  opts = opts or {}
  local bufnr = vim.api.nvim_get_current_buf()
  if vim.bo[bufnr].modified then
    vim.cmd('silent write')
  end
  notify('searching for a fix the tests accept…')
  local client = M.client(bufnr)
  if not client then
    return notify('heedls is not attached to this buffer', vim.log.levels.WARN)
  end
  local params = cursor_params(bufnr)
  local done = false
  local outcome
  client:request('heedls/fix', params, function(err, result)
    done = true
    outcome = result
    if err then
      return notify('fix failed: ' .. (err.message or '?'), vim.log.levels.ERROR)
    end
    if not (result and result.fixed and result.edit) then
      return notify('no validated fix found. ' .. (result and result.explanation or ''))
    end
    local function apply()
      vim.lsp.util.apply_workspace_edit(result.edit, client.offset_encoding)
      notify('applied a fix that makes the failing tests pass (u undoes it). ' .. (result.explanation or ''))
    end
    if opts.apply then
      apply()
    else
      vim.ui.select({ 'Apply', 'Show patch', 'Cancel' }, { prompt = 'heedls found a validated fix' }, function(choice)
        if choice == 'Apply' then
          apply()
        elseif choice == 'Show patch' then
          vim.lsp.util.open_floating_preview(vim.split(result.patch or '', '\n'), 'diff', { border = 'rounded' })
        end
      end)
    end
  end, bufnr)
  if opts.wait then
    vim.wait(opts.wait, function() return done end, 100)
  end
  return outcome
end

--- Run the related tests; diagnostics arrive as usual. opts.wait (ms) waits and returns the result.
function M.run_tests(opts)
  opts = opts or {}
  local uri = vim.uri_from_bufnr(0)
  local result = M.request('workspace/executeCommand', { command = 'heedls.runTests', arguments = { uri } }, {
    wait = opts.wait,
    on_result = function(res, err)
      if err then
        return notify(err, vim.log.levels.ERROR)
      end
      if type(res) == 'table' and res.ran == false and res.reason then
        notify(tostring(res.reason), vim.log.levels.WARN)
      end
    end,
  })
  return result
end

--- Write the acceptance report (HTML); opts.open opens it, opts.wait (ms) waits and returns its path.
function M.report(opts)
  opts = opts or {}
  local path
  M.request('workspace/executeCommand', { command = 'heedls.report', arguments = {} }, {
    wait = opts.wait,
    on_result = function(result, err)
      if err then
        return notify(err, vim.log.levels.ERROR)
      end
      path = type(result) == 'table' and result.html or nil
      if not path then
        return notify('no report: ' .. tostring(type(result) == 'table' and result.reason or 'unknown'),
          vim.log.levels.WARN)
      end
      if opts.open and vim.ui.open then
        vim.ui.open(path)
      end
      notify('report written to ' .. path)
    end,
  })
  return path
end

return M
