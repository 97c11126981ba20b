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
