-- heedls: user commands and the LspAttach hook. The server config itself is lsp/heedls.lua.
if vim.g.loaded_heedls then
  return
end
vim.g.loaded_heedls = 1

if vim.fn.has('nvim-0.11') == 0 then
  vim.notify('heedls needs Neovim 0.11 or newer', vim.log.levels.WARN)
  return
end

local function cmd(name, fn, opts)
  vim.api.nvim_create_user_command(name, fn, vim.tbl_extend('force', { desc = 'heedls' }, opts or {}))
end

cmd('HeedlsToggle', function(a)
  local arg = a.args ~= '' and (a.args == 'on') or nil
  require('heedls').toggle(arg)
end, { nargs = '?', complete = function() return { 'on', 'off' } end, desc = 'heedls: toggle inline suggestions' })
cmd('HeedlsExplain', function() require('heedls').explain() end, { desc = 'heedls: explain the problem at the cursor' })
cmd('HeedlsFix', function(a) require('heedls').fix({ apply = a.bang }) end,
  { bang = true, desc = 'heedls: find a fix the tests accept (! applies it without asking)' })
cmd('HeedlsTests', function() require('heedls').run_tests() end, { desc = 'heedls: run the related tests' })
cmd('HeedlsReport', function() require('heedls').report({ open = true }) end, { desc = 'heedls: acceptance report' })
cmd('HeedlsStatus', function() require('heedls').show_status() end, { desc = 'heedls: server and gate status' })

vim.api.nvim_set_hl(0, 'HeedlsGhostText', { link = 'Comment', default = true })

vim.api.nvim_create_autocmd('LspAttach', {
  group = vim.api.nvim_create_augroup('heedls.attach', { clear = true }),
  callback = function(args)
    local client = vim.lsp.get_client_by_id(args.data.client_id)
    if client and client.name == 'heedls' then
      require('heedls').on_attach(client, args.buf)
      vim.cmd.redrawstatus() -- statusline components (require('heedls').statusline()) show it at once
    end
  end,
})

-- Neovim tells a server about changed files only when it can watch them (not on Linux by default):
-- a saved pyproject.toml is reported to heedls here, so its [tool.heedls] applies at once, as in
-- VS Code (whose extension watches the file).
vim.api.nvim_create_autocmd('BufWritePost', {
  group = vim.api.nvim_create_augroup('heedls.project', { clear = true }),
  pattern = 'pyproject.toml',
  callback = function(args)
    local path = vim.fs.normalize(vim.api.nvim_buf_get_name(args.buf))
    for _, client in ipairs(vim.lsp.get_clients({ name = 'heedls' })) do
      local root = client.root_dir or (client.config and client.config.root_dir)
      if root and vim.fs.normalize(root) == vim.fs.dirname(path) then
        client:notify('workspace/didChangeWatchedFiles', { changes = { { uri = vim.uri_from_fname(path), type = 2 } } })
      end
    end
  end,
})

-- A buffer renamed (:file NAME, :saveas) is reported by Neovim to its servers only when it is next
-- written: until then every change went to a document heedls did not know, and suggestions for it
-- stopped. heedls is told at once (closed under the old name, open under the new one).
local renames = vim.api.nvim_create_augroup('heedls.rename', { clear = true })
vim.api.nvim_create_autocmd('BufFilePre', {
  group = renames,
  callback = function(args)
    if vim.lsp.get_clients({ bufnr = args.buf, name = 'heedls' })[1] then
      vim.b[args.buf].heedls_renamed_from = vim.uri_from_bufnr(args.buf)
    end
  end,
})
vim.api.nvim_create_autocmd('BufFilePost', {
  group = renames,
  callback = function(args)
    local buf = args.buf
    local old = vim.b[buf].heedls_renamed_from
    vim.b[buf].heedls_renamed_from = nil
    local uri = vim.uri_from_bufnr(buf)
    if not old or old == uri or not vim.api.nvim_buf_is_loaded(buf) then
      return
    end
    local eol = ({ dos = '\r\n', mac = '\r' })[vim.bo[buf].fileformat] or '\n'
    local text = table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), eol)
    if vim.bo[buf].eol then
      text = text .. eol
    end
    for _, client in ipairs(vim.lsp.get_clients({ bufnr = buf, name = 'heedls' })) do
      local language = client.get_language_id and client.get_language_id(buf, vim.bo[buf].filetype) or 'python'
      client:notify('textDocument/didClose', { textDocument = { uri = old } })
      client:notify('textDocument/didOpen', { textDocument = {
        uri = uri, languageId = language, version = vim.lsp.util.buf_versions[buf] or 0, text = text,
      } })
    end
  end,
})
