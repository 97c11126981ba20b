-- Ghost text for Neovim 0.11 (no native inline completion there): asks the server for
-- `textDocument/inlineCompletion` while typing, shows the first item as virtual text, and reports
-- what happened to it so the acceptance gate learns:
--   accept  (<Tab>)                  -> the item's command `heedls.accept(id)`
--   dismiss (<C-]>, <Esc>, leaving, moving the cursor without typing)
--                                    -> `heedls/suggestionRejected` {reason = "dismissed"}
--   typing something else (other text, <BS>, <CR>)
--                                    -> `heedls/suggestionRejected` {reason = "typed-over"}
--   typing through it                -> nothing: the rest stays shown, the server answers the next
--                                       request with the same id and the rest (one event, so <Tab>
--                                       later accepts the original suggestion)
--   an answer with another id (or none) after typing through / asking again at the same place
--                                    -> `heedls/suggestionRejected` {reason = "superseded"}
--   shown                            -> `heedls/suggestionShown` (once per id)
local M = {}

local ns = vim.api.nvim_create_namespace('heedls.ghost')
local uv = vim.uv or vim.loop

---@class heedls.Shown
---@field id string? suggestion id (the accept command's argument)
---@field item table the LSP item
---@field text string what is displayed (the part not typed yet)
---@field row integer 0-based
---@field col integer byte column
---@field prefix string line text before col when shown
---@field tick integer changedtick when shown
---@field client_id integer
---@field through boolean? typed through since shown (redrawn locally until the server answers)

---@type table<integer, heedls.Shown>
local shown = {}
---@type table<integer, {client: vim.lsp.Client, id: integer}>
local pending = {}
local timers = {}
local attached = {}

local function client_of(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr, name = 'heedls' })[1]
end

local function enabled()
  return require('heedls').enabled
end

function M.current(bufnr)
  return shown[bufnr or vim.api.nvim_get_current_buf()]
end

local function clear(bufnr)
  vim.api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  shown[bufnr] = nil
end

local function suggestion_id(item)
  local cmd = item.command
  if type(cmd) == 'table' and cmd.command == 'heedls.accept' and type(cmd.arguments) == 'table' then
    return cmd.arguments[1]
  end
end

--- Report and forget the shown suggestion.
function M.reject(bufnr, reason)
  local s = shown[bufnr]
  if not s then
    return
  end
  clear(bufnr)
  local client = vim.lsp.get_client_by_id(s.client_id)
  if client and s.id then
    client:notify('heedls/suggestionRejected', { id = s.id, reason = reason })
  end
end

function M.dismiss(bufnr)
  M.reject(bufnr or vim.api.nvim_get_current_buf(), 'dismissed')
end

function M.dismiss_all()
  for bufnr in pairs(shown) do
    M.dismiss(bufnr)
  end
end

local function cancel_pending(bufnr)
  local p = pending[bufnr]
  if p then
    pending[bufnr] = nil
    pcall(function() p.client:cancel_request(p.id) end)
  end
end

local function item_text(item)
  local text = item.insertText
  if type(text) == 'table' then
    text = text.value
  end
  return type(text) == 'string' and text or nil
end

--- What to display for `item` with the cursor at (row, col): the part of its text not typed yet.
local function ghost_for(item, line, row, col, encoding)
  local text = item_text(item)
  if not text or text == '' then
    return nil
  end
  local range = item.range
  if range then
    if range.start.line ~= row then
      return nil
    end
    local start = vim.str_byteindex(line, encoding, range.start.character, false)
    if start > col then
      return nil
    end
    local typed = line:sub(start + 1, col)
    if text:sub(1, #typed) ~= typed then
      return nil
    end
    text = text:sub(#typed + 1)
  end
  return text ~= '' and text or nil
end

local function render(bufnr, row, col, text)
  local lines = vim.split(text, '\n', { plain = true })
  local opts = {
    virt_text = { { lines[1], 'HeedlsGhostText' } },
    virt_text_pos = 'inline',
    hl_mode = 'combine',
    priority = 200,
  }
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do
      table.insert(opts.virt_lines, { { lines[i], 'HeedlsGhostText' } })
    end
  end
  vim.api.nvim_buf_set_extmark(bufnr, ns, row, col, opts)
end

--- Ask the server for a suggestion at the cursor (or at opts.position = {row0, col_bytes}).
--- opts.invoked: a manual request (the server may skip its gate's first stage for those).
--- opts.callback(shown|nil) runs when the answer was handled.
function M.request(bufnr, opts)
  opts = opts or {}
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local client = client_of(bufnr)
  local done = opts.callback or function() end
  if not client or not enabled() then
    return done(nil)
  end
  cancel_pending(bufnr)
  local row, col
  if opts.position then
    row, col = opts.position[1], opts.position[2]
  else
    local cursor = vim.api.nvim_win_get_cursor(0)
    row, col = cursor[1] - 1, cursor[2]
  end
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  local encoding = client.offset_encoding or 'utf-16'
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    position = { line = row, character = vim.str_utfindex(line, encoding, col, false) },
    context = { triggerKind = opts.invoked and 1 or 2 },
  }
  local tick = vim.api.nvim_buf_get_changedtick(bufnr)
  local ok, request_id = client:request('textDocument/inlineCompletion', params, function(err, result)
    pending[bufnr] = nil
    -- Stale answers (the buffer moved on) are dropped; errors never reach the user as popups.
    if err or not vim.api.nvim_buf_is_valid(bufnr)
      or vim.api.nvim_buf_get_changedtick(bufnr) ~= tick then
      return done(nil)
    end
    if not opts.position and vim.fn.mode():sub(1, 1) ~= 'i' then
      return done(nil)
    end
    local items = result and (result.items or result) or {}
    for _, item in ipairs(items) do
      local text = ghost_for(item, line, row, col, encoding)
      if text then
        local id = suggestion_id(item)
        local old = shown[bufnr]
        local same = old and id and old.id == id -- typed through: the same suggestion, its rest
        if same then
          clear(bufnr)
        else
          M.reject(bufnr, 'superseded')
        end
        render(bufnr, row, col, text)
        shown[bufnr] = {
          id = id, item = item, text = text, row = row, col = col,
          prefix = line:sub(1, col), tick = tick, client_id = client.id,
        }
        if id and not same then
          client:notify('heedls/suggestionShown', { id = id })
        end
        return done(shown[bufnr])
      end
    end
    -- no answer to what was typed through it: that suggestion is superseded
    if shown[bufnr] and shown[bufnr].through then
      M.reject(bufnr, 'superseded')
    end
    done(nil)
  end, bufnr)
  if ok and request_id then
    pending[bufnr] = { client = client, id = request_id }
  end
end

--- Insert the shown suggestion and tell the server (the item's own command). Returns true if
--- there was one.
function M.accept(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local s = shown[bufnr]
  if not s then
    return false
  end
  clear(bufnr)
  local lines = vim.split(s.text, '\n', { plain = true })
  vim.api.nvim_buf_set_text(bufnr, s.row, s.col, s.row, s.col, lines)
  local end_row = s.row + #lines - 1
  local end_col = (#lines == 1) and (s.col + #lines[1]) or #lines[#lines]
  if vim.api.nvim_get_current_buf() == bufnr then
    pcall(vim.api.nvim_win_set_cursor, 0, { end_row + 1, end_col })
  end
  local client = vim.lsp.get_client_by_id(s.client_id)
  if client and s.item.command then
    client:exec_cmd(s.item.command, { bufnr = bufnr })
  end
  return true
end

--- After a change in Insert mode: typing through the shown suggestion keeps it (the rest is
--- redrawn at the cursor, same id, and the next request's answer confirms or supersedes it);
--- any other change (other text, <BS>, <CR>) typed over it.
local function typed_on(bufnr, s)
  local cursor = vim.api.nvim_win_get_cursor(0)
  local row, col = cursor[1] - 1, cursor[2]
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  if row ~= s.row or col < s.col or line:sub(1, #s.prefix) ~= s.prefix then
    return M.reject(bufnr, 'typed-over')
  end
  local typed = line:sub(s.col + 1, col)
  if s.text:sub(1, #typed) ~= typed then
    return M.reject(bufnr, 'typed-over')
  end
  local rest = s.text:sub(#typed + 1)
  if rest == '' then
    return M.reject(bufnr, 'superseded') -- typed all of it by hand: the next answer is a new one
  end
  vim.api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  render(bufnr, row, col, rest)
  s.text, s.col, s.prefix, s.tick = rest, col, line:sub(1, col), vim.api.nvim_buf_get_changedtick(bufnr)
  s.through = true
end

local function schedule(bufnr, delay)
  local timer = timers[bufnr]
  if not timer then
    timer = assert(uv.new_timer())
    timers[bufnr] = timer
  end
  timer:stop()
  timer:start(delay, 0, vim.schedule_wrap(function()
    if vim.api.nvim_buf_is_valid(bufnr) and vim.api.nvim_get_current_buf() == bufnr
      and vim.fn.mode():sub(1, 1) == 'i' then
      M.request(bufnr)
    end
  end))
end

function M.attach(client, bufnr, opts)
  if attached[bufnr] then
    return
  end
  attached[bufnr] = true
  local group = vim.api.nvim_create_augroup('heedls.inline.' .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd({ 'TextChangedI', 'TextChangedP' }, {
    group = group, buffer = bufnr,
    callback = function()
      local s = shown[bufnr]
      if s then
        typed_on(bufnr, s)
      end
      schedule(bufnr, opts.debounce_ms)
    end,
  })
  vim.api.nvim_create_autocmd('CursorMovedI', {
    group = group, buffer = bufnr,
    callback = function()
      local s = shown[bufnr]
      if s and vim.api.nvim_buf_get_changedtick(bufnr) == s.tick then
        local cursor = vim.api.nvim_win_get_cursor(0)
        if cursor[1] - 1 ~= s.row or cursor[2] ~= s.col then
          M.reject(bufnr, 'dismissed') -- moved away without typing
        end
      end
    end,
  })
  vim.api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group, buffer = bufnr,
    callback = function() M.reject(bufnr, 'dismissed'); cancel_pending(bufnr) end,
  })
  -- CTRL-C (and CTRL-O) leave Insert mode without InsertLeave: the ghost text would stay on
  -- screen, and Tab would later insert it at its old place.
  vim.api.nvim_create_autocmd('ModeChanged', {
    group = group, buffer = bufnr,
    callback = function()
      if not vim.startswith(vim.v.event.new_mode or '', 'i') then
        M.reject(bufnr, 'dismissed')
        cancel_pending(bufnr)
      end
    end,
  })
  vim.api.nvim_create_autocmd({ 'BufUnload', 'LspDetach' }, {
    group = group, buffer = bufnr,
    callback = function(args)
      if args.event == 'LspDetach' and args.data and args.data.client_id ~= client.id then
        return
      end
      M.reject(bufnr, 'dismissed')
      cancel_pending(bufnr)
      attached[bufnr] = nil
      pcall(vim.api.nvim_del_augroup_by_id, group)
    end,
  })

  -- No suggestion shown: the key does what it did without heedls (the user's own mapping, a
  -- completion plugin's, else the key itself).
  local heedls = require('heedls')
  heedls.map_insert_key(bufnr, opts.accept_key, 'accept suggestion', function()
    return shown[bufnr] ~= nil and function() M.accept(bufnr) end
  end)
  heedls.map_insert_key(bufnr, opts.dismiss_key, 'dismiss suggestion', function()
    return shown[bufnr] ~= nil and function() M.dismiss(bufnr) end
  end)
  vim.keymap.set('i', opts.next_key, function() M.request(bufnr, { invoked = true }) end,
    { buffer = bufnr, desc = 'heedls: ask for a suggestion' })
end

return M
