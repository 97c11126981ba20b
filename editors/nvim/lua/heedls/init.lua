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

function M.options()
  return vim.tbl_deep_extend('force', defaults, vim.g.heedls or {})
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
    vim.api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
      group = vim.api.nvim_create_augroup('heedls-native-' .. bufnr, { clear = true }),
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
    local function map(key, fn, desc)
      vim.keymap.set('i', key, function()
        if not fn() then
          return key
        end
      end, { buffer = bufnr, expr = true, replace_keycodes = true, desc = 'heedls: ' .. desc })
    end
    map(opts.accept_key, function() return M.native_accept(bufnr) end, 'accept suggestion')
    map(opts.dismiss_key, function() return M.native_dismiss(bufnr) end, 'dismiss suggestion')
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
