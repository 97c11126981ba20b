-- Drives Neovim headless through its Lua API against the real heedls server; writes what it saw to
-- $HEEDLS_RESULTS (JSON) for tests/editors/test_nvim_e2e.py to assert on, then quits.
local results = { steps = {} }
local ws = assert(vim.env.HEEDLS_WORKSPACE)
local out = assert(vim.env.HEEDLS_RESULTS)

local function save()
  local f = assert(io.open(out, 'w'))
  f:write(vim.json.encode(results))
  f:close()
end

local only = vim.env.HEEDLS_E2E_ONLY -- comma list of steps, for working on one step
local function step(name, fn)
  if only and only ~= '' and not vim.tbl_contains(vim.split(only, ','), name) and name ~= 'attach' then
    return true
  end
  local started = vim.uv.hrtime()
  local ok, detail = xpcall(fn, debug.traceback)
  local entry = type(detail) == 'table' and detail or {}
  entry.ok = ok
  entry.seconds = (vim.uv.hrtime() - started) / 1e9
  if not ok then
    entry.error = tostring(detail)
  end
  results.steps[name] = entry
  save()
  return ok
end

local heedls = require('heedls')
local inline = require('heedls.inline')
local ns = vim.api.nvim_get_namespaces()['heedls.ghost']

local function ghost_marks(buf)
  local marks = vim.api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true })
  local texts = {}
  for _, m in ipairs(marks) do
    for _, chunk in ipairs(m[4].virt_text or {}) do
      table.insert(texts, chunk[1])
    end
  end
  return table.concat(texts)
end

--- Append lines at the end of the buffer; returns the 0-based row and byte col of the end.
local function append(buf, lines)
  local n = vim.api.nvim_buf_line_count(buf)
  vim.api.nvim_buf_set_lines(buf, n, n, false, lines)
  local row = vim.api.nvim_buf_line_count(buf) - 1
  return row, #lines[#lines]
end

local function suggest(buf, row, col)
  -- A cold server (indexing, jedi start-up) may answer the first request empty: ask up to 3 times,
  -- as a person would keep typing.
  for _ = 1, 3 do
    local got, done = nil, false
    inline.request(buf, { position = { row, col }, invoked = true, callback = function(s) got, done = s, true end })
    vim.wait(15000, function() return done end, 50)
    if got then
      return got
    end
  end
end

local buf
-- The native front end (vim.lsp.inline_completion, 0.12+) asks and draws only in Insert mode.
local native_ns_name = 'nvim.lsp.inline_completion'
local function native_marks(b)
  local native_ns = vim.api.nvim_get_namespaces()[native_ns_name]
  if not native_ns then
    return ''
  end
  local texts = {}
  for _, m in ipairs(vim.api.nvim_buf_get_extmarks(b, native_ns, 0, -1, { details = true })) do
    for _, chunk in ipairs(m[4].virt_text or {}) do
      table.insert(texts, chunk[1])
    end
    for _, line in ipairs(m[4].virt_lines or {}) do
      table.insert(texts, '\n')
      for _, chunk in ipairs(line) do
        table.insert(texts, chunk[1])
      end
    end
  end
  return table.concat(texts)
end

--- Runs fn in Insert mode with the cursor at the end of line row (0-based), as a person typing
--- there: feedkeys 'A' with 'x!' stays in Insert mode until fn (on a timer) stops it.
local function in_insert(row, fn)
  vim.api.nvim_win_set_cursor(0, { row + 1, 0 })
  local ran, result = false, nil
  vim.defer_fn(function()
    ran, result = xpcall(fn, debug.traceback)
    vim.cmd('stopinsert')
  end, 0)
  vim.api.nvim_feedkeys('A', 'nx!', false)
  if not ran then
    error(result, 0)
  end
  return result
end

--- Enters Insert mode at the end of row until the native ghost text shows (a cold server may
--- answer the first request empty: leave and enter again, which asks again), then runs fn(ghost).
local function with_native_ghost(row, fn)
  for _ = 1, 3 do
    local result = in_insert(row, function()
      local mode = vim.api.nvim_get_mode().mode
      if not vim.wait(15000, function() return native_marks(buf) ~= '' end, 50) then
        return nil
      end
      return { fn(native_marks(buf), mode) }
    end)
    if result then
      return result[1]
    end
  end
  error('no native ghost text')
end

local ok = step('attach', function()
  vim.cmd.edit(ws .. '/shapes.py')
  buf = vim.api.nvim_get_current_buf()
  assert(vim.wait(30000, function() return heedls.client(buf) ~= nil end, 50), 'heedls did not attach')
  local client = heedls.client(buf)
  assert(vim.wait(30000, function() return client.initialized end, 50), 'not initialized')
  assert(vim.wait(10000, function() return heedls.inline_kind[buf] ~= nil end, 50), 'on_attach did not run')
  local caps = client.server_capabilities
  return {
    name = client.name,
    cmd = client.config.heedls_cmd or client.config.cmd,
    inline_provider = caps.inlineCompletionProvider ~= nil,
    commands = caps.executeCommandProvider and caps.executeCommandProvider.commands or {},
    native = heedls.use_native(),
    has_native_api = vim.lsp.inline_completion ~= nil,
    inline_kind = heedls.inline_kind[buf],
    version = tostring(vim.version()),
  }
end)
local native = heedls.inline_kind[buf] == 'native'

if ok then
  -- Native front end: the ghost text is vim.lsp.inline_completion's, accepted with
  -- vim.lsp.inline_completion.get() (heedls.native_accept, what <Tab> does).
  if native then
    step('inline_accept', function()
      local row = append(buf, { '', '', 'def total3(a, b, c):', '    return ' })
      local before = vim.api.nvim_buf_get_lines(buf, row, row + 1, false)[1]
      return with_native_ghost(row, function(ghost, mode)
        heedls.native_last = nil
        local fallback_marks = ghost_marks(buf)
        local got = heedls.native_accept(buf)
        assert(vim.wait(3000, function() return heedls.native_last ~= nil end, 20), 'get() accepted nothing')
        vim.wait(500)
        local after = vim.api.nvim_buf_get_lines(buf, row, row + #vim.split(ghost, '\n'), false)
        local last = heedls.native_last
        return { path = 'native', mode = mode, get = got, id = last.id, action = last.action, text = ghost,
          ghost = ghost, insert_text = last.insert_text, line_before = before, lines_after = after,
          marks_after = native_marks(buf), fallback_marks = fallback_marks }
      end)
    end)

    step('inline_dismiss', function()
      local row = append(buf, { '', '', 'def sub3(a, b, c):', '    ret' })
      return with_native_ghost(row, function(ghost)
        heedls.native_last = nil
        local got = heedls.native_dismiss(buf)
        assert(vim.wait(3000, function() return heedls.native_last ~= nil end, 20), 'dismiss found nothing')
        vim.wait(300)
        local last = heedls.native_last
        return { path = 'native', get = got, id = last.id, action = last.action, text = ghost, ghost = ghost,
          marks_after = native_marks(buf), line = vim.api.nvim_buf_get_lines(buf, row, row + 1, false)[1] }
      end)
    end)

    step('toggle', function()
      local off = heedls.toggle(false)
      vim.wait(300)
      local status_off = heedls.status()
      local enabled_off = vim.lsp.inline_completion.is_enabled({ bufnr = buf })
      local row = append(buf, { '', '', 'def mul3(a, b, c):', '    return ' })
      local while_off = in_insert(row, function()
        return vim.wait(2000, function() return native_marks(buf) ~= '' end, 50)
      end)
      heedls.toggle(true)
      local status_on = heedls.status()
      local enabled_on = vim.lsp.inline_completion.is_enabled({ bufnr = buf })
      -- and the suggestions come back
      local ghost_on = with_native_ghost(row, function(ghost) return ghost end)
      vim.api.nvim_buf_set_lines(buf, row - 3, row + 1, false, {})
      return { path = 'native', off = off, status_off_enabled = status_off and status_off.enabled,
        suggestion_while_off = while_off, native_enabled_off = enabled_off, native_enabled_on = enabled_on,
        status_on_enabled = status_on and status_on.enabled, ghost_after_on = ghost_on, status = status_on }
    end)
  end

  if not native then
  step('inline_accept', function()
    local row, col = append(buf, { '', '', 'def total3(a, b, c):', '    return ' })
    local s = assert(suggest(buf, row, col), 'no suggestion')
    local ghost = ghost_marks(buf)
    assert(ghost == s.text, 'ghost text differs: ' .. ghost)
    local before = vim.api.nvim_buf_get_lines(buf, row, row + 1, false)[1]
    assert(inline.accept(buf), 'accept found nothing')
    local after = vim.api.nvim_buf_get_lines(buf, row, row + #vim.split(s.text, '\n'), false)
    vim.wait(500)
    return { path = 'fallback', id = s.id, text = s.text, ghost = ghost, line_before = before,
      lines_after = after,
      marks_after = ghost_marks(buf) }
  end)

  step('inline_dismiss', function()
    local row, col = append(buf, { '', '', 'def sub3(a, b, c):', '    ret' })
    local s = assert(suggest(buf, row, col), 'no suggestion')
    local ghost = ghost_marks(buf)
    inline.dismiss(buf)
    vim.wait(300)
    return { id = s.id, text = s.text, ghost = ghost, marks_after = ghost_marks(buf),
      line = vim.api.nvim_buf_get_lines(buf, row, row + 1, false)[1] }
  end)

  step('toggle', function()
    local off = heedls.toggle(false)
    vim.wait(300)
    local status_off = heedls.status()
    local row, col = append(buf, { '', '', 'def mul3(a, b, c):', '    return ' })
    local got, done = nil, false
    inline.request(buf, { position = { row, col }, invoked = true, callback = function(s) got, done = s, true end })
    vim.wait(5000, function() return done end, 50)
    heedls.toggle(true)
    local status_on = heedls.status()
    vim.api.nvim_buf_set_lines(buf, row - 3, row + 1, false, {})
    return { off = off, status_off_enabled = status_off and status_off.enabled, suggestion_while_off = got ~= nil,
      status_on_enabled = status_on and status_on.enabled, status = status_on }
  end)
  end
  vim.cmd('silent write')
end

local stats
if ok then
  step('diagnostics', function()
    vim.cmd.edit(ws .. '/stats.py')
    stats = vim.api.nvim_get_current_buf()
    assert(vim.wait(20000, function() return heedls.client(stats) ~= nil end, 50), 'not attached to stats.py')
    vim.cmd('silent write') -- didSave runs the related tests
    local found = vim.wait(90000, function()
      for _, d in ipairs(vim.diagnostic.get(stats)) do
        if d.severity == vim.diagnostic.severity.ERROR then
          return true
        end
      end
      return false
    end, 200)
    local diags = {}
    for _, d in ipairs(vim.diagnostic.get(stats)) do
      table.insert(diags, { lnum = d.lnum, col = d.col, severity = d.severity, message = d.message, source = d.source,
        code = d.code })
    end
    assert(found, 'no error diagnostic on stats.py: ' .. vim.inspect(diags))
    return { diagnostics = diags }
  end)

  step('explain', function()
    local target = assert(vim.diagnostic.get(stats, { severity = vim.diagnostic.severity.ERROR })[1],
      'no error diagnostic')
    vim.api.nvim_win_set_cursor(0, { target.lnum + 1, target.col })
    local items = heedls.explain({ wait = 15000 })
    return { explanations = items }
  end)

  step('code_actions', function()
    local target = assert(vim.diagnostic.get(stats, { severity = vim.diagnostic.severity.ERROR })[1],
      'no error diagnostic')
    local client = assert(heedls.client(stats))
    local lsp_diags = {}
    for _, d in ipairs(vim.diagnostic.get(stats, { lnum = target.lnum })) do
      if d.user_data and d.user_data.lsp then
        table.insert(lsp_diags, d.user_data.lsp)
      end
    end
    local params = {
      textDocument = { uri = vim.uri_from_bufnr(stats) },
      range = { start = { line = target.lnum, character = 0 }, ['end'] = { line = target.lnum + 1, character = 0 } },
      context = { diagnostics = lsp_diags }, -- as vim.lsp.buf.code_action() sends it by default
    }
    local function validated(only)
      local p = vim.deepcopy(params)
      p.context.only = only
      local response = client:request_sync('textDocument/codeAction', p, 30000, stats)
      local actions, titles, pick = response and response.result or {}, {}, nil
      for _, a in ipairs(actions) do
        table.insert(titles, a.title)
        if not pick and a.title:find('tests pass', 1, true) then
          pick = a
        end
      end
      return pick, titles
    end
    local pick, titles = validated()
    local searched = false
    if not pick then
      -- What :HeedlsFix does: the server searches for a fix and validates it with the tests; the
      -- validated fix then appears among the code actions for this text.
      searched = true
      local fix = client:request_sync('heedls/fix', { textDocument = params.textDocument,
        position = { line = target.lnum, character = target.col } }, 180000, stats)
      assert(fix and fix.result and fix.result.fixed, 'heedls/fix found no validated fix: ' .. vim.inspect(fix))
      pick, titles = validated()
    end
    assert(pick, 'no validated quick fix offered: ' .. vim.inspect(titles))
    -- vim.lsp.buf.code_action({ context = { only = { 'quickfix' } } }) must offer it too
    local _, quickfix_titles = validated({ 'quickfix' })
    local actions = { pick }
    local action = actions[1]
    if not action.edit and not action.command and client:supports_method('codeAction/resolve') then
      action = client:request_sync('codeAction/resolve', action, 30000, stats).result or action
    end
    if action.edit then
      vim.lsp.util.apply_workspace_edit(action.edit, client.offset_encoding)
    end
    if action.command then
      local cmd = type(action.command) == 'table' and action.command or action
      client:request_sync('workspace/executeCommand', { command = cmd.command, arguments = cmd.arguments }, 60000, stats)
    end
    vim.wait(1000)
    vim.cmd('silent write')
    return { titles = titles, applied = action.title, searched = searched, quickfix_titles = quickfix_titles,
      lines = vim.api.nvim_buf_get_lines(stats, 0, -1, false) }
  end)
end

local function read_file(path)
  local f = io.open(path, 'rb')
  local data = f and f:read('*a') or ''
  if f then
    f:close()
  end
  return data
end

--- Pid of the heedls server this Neovim started (`… heedls serve` with the workspace as cwd). A
--- child the server is starting (its refit worker, a test run) carries the server's command line
--- between fork and exec: a process whose parent is itself a match is not the server.
local function server_pid()
  local parents = {}
  for name, kind in vim.fs.dir('/proc') do
    if kind == 'directory' and name:match('^%d+$') then
      local cmdline = read_file('/proc/' .. name .. '/cmdline')
      local argv = vim.split(cmdline, '\0', { plain = true })
      if vim.tbl_contains(argv, 'serve') and cmdline:find('heedls', 1, true)
          and vim.uv.fs_readlink('/proc/' .. name .. '/cwd') == ws then
        -- /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so read after its ')'
        local stat = read_file('/proc/' .. name .. '/stat')
        parents[tonumber(name)] = tonumber(stat:match('%)%s+%S+%s+(%d+)'))
      end
    end
  end
  for pid, ppid in pairs(parents) do
    if not parents[ppid] then
      return pid
    end
  end
end

if ok then
  step('slow_server', function()
    -- The server stops answering (SIGSTOP): every user command returns at once, typing goes on,
    -- nothing fails; once it answers again, suggestions come back.
    local pid = assert(server_pid(), 'no heedls server process')
    local errmsg_before = vim.v.errmsg
    vim.ui.open = function() return nil, 'not in a test' end -- :HeedlsReport opens the report later
    assert(vim.uv.kill(pid, 'sigstop') == 0, 'SIGSTOP failed')
    local timings = {}
    local okcall, problem = pcall(function()
      vim.cmd.edit(ws .. '/shapes.py')
      for _, cmd in ipairs({ 'HeedlsStatus', 'HeedlsExplain', 'HeedlsTests', 'HeedlsReport' }) do
        local t0 = vim.uv.hrtime()
        vim.cmd(cmd)
        timings[cmd] = (vim.uv.hrtime() - t0) / 1e9
      end
      local t0 = vim.uv.hrtime()
      local row = append(buf, { '', '', 'def total6(a, b, c):', '    return ' })
      if not native then
        inline.request(buf, { position = { row, #'    return ' }, invoked = true, callback = function() end })
      end
      timings.typing = (vim.uv.hrtime() - t0) / 1e9
      vim.wait(2000)
    end)
    vim.uv.kill(pid, 'sigcont')
    assert(okcall, problem)
    local row, col = append(buf, { '', '', 'def total7(a, b, c):', '    return ' })
    local ghost
    if native then
      ghost = with_native_ghost(row, function(text) return text end)
    else
      local s = suggest(buf, row, col)
      ghost = s and s.text
    end
    vim.cmd('silent write')
    return { timings = timings, errmsg = vim.v.errmsg ~= errmsg_before and vim.v.errmsg or '',
      ghost_after_resume = ghost, pid_alive = vim.uv.kill(pid, 0) == 0 }
  end)
end

step('checkhealth', function()
  vim.cmd('checkhealth heedls')
  local lines = vim.api.nvim_buf_get_lines(0, 0, -1, false)
  return { lines = lines }
end)

save()
vim.cmd('qa!')
