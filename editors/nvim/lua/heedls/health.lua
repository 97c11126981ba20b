-- :checkhealth heedls
local M = {}

function M.check()
  local health = vim.health
  local heedls = require('heedls')

  health.start('heedls: Neovim')
  local v = vim.version()
  local version = string.format('%d.%d.%d', v.major, v.minor, v.patch)
  if vim.fn.has('nvim-0.11') == 1 then
    health.ok('Neovim ' .. version)
  else
    health.error('Neovim ' .. version .. ': heedls needs 0.11 or newer (vim.lsp.config / vim.lsp.enable)')
  end
  local options = heedls.options()
  if #heedls.option_problems == 0 then
    health.ok('options (vim.g.heedls): no problems')
  end
  for _, problem in ipairs(heedls.option_problems) do
    health.warn('options: ' .. problem, { 'see :help heedls-options' })
  end
  if heedls.use_native() then
    health.ok('inline suggestions: native vim.lsp.inline_completion')
  else
    health.ok('inline suggestions: heedls ghost text (virtual text; ' .. options.inline.accept_key
      .. ' accepts, ' .. options.inline.dismiss_key .. ' or <Esc> dismisses)')
  end

  health.start('heedls: server')
  local cmd, source = heedls.resolve_cmd()
  if source == 'not found' then
    health.error('heedls server not found', {
      'Install it in your project environment: python -m pip install /path/to/heedls (a checkout of heedls)',
      'or set vim.g.heedls = { cmd = { "/path/to/heedls", "serve" } }',
    })
  else
    local exe = cmd[1]
    if vim.fn.executable(exe) ~= 1 then
      health.error(string.format('%s (from %s) is not executable', exe, source))
    else
      local version_cmd = vim.list_slice(cmd, 1, #cmd - 1)
      table.insert(version_cmd, '--version')
      local ok, result = pcall(function() return vim.system(version_cmd, { text = true }):wait(20000) end)
      if ok and result.code == 0 then
        health.ok(string.format('%s (from %s): %s', table.concat(cmd, ' '), source, vim.trim(result.stdout)))
      else
        health.error(string.format('%s (from %s) does not run: %s', table.concat(version_cmd, ' '), source,
          ok and vim.trim(result.stderr or '') or tostring(result)), { 'python -m pip install /path/to/heedls' })
      end
    end
  end

  local configs = vim.lsp.config and vim.lsp.config.heedls
  if configs then
    health.ok('vim.lsp.config.heedls is defined (lsp/heedls.lua)')
  else
    health.warn('vim.lsp.config.heedls not found: is editors/nvim on the runtimepath?')
  end
  local enabled = vim.lsp.is_enabled and vim.lsp.is_enabled('heedls')
  if enabled == false then
    health.warn("heedls is not enabled: add vim.lsp.enable('heedls') to your config")
  end

  local client = heedls.client()
  if client then
    health.ok(string.format('attached (client id %d, %s)', client.id, client.offset_encoding))
    local status = heedls.status()
    if status then
      local gate = status.gate or {}
      health.ok(string.format('suggestions %s; provider %s; gate %s (%d requests, %d skipped, %d hidden)',
        status.enabled and 'on' or 'off', tostring(status.provider), tostring(gate.mode), gate.requests or 0,
        gate.skipped or 0, gate.hidden or 0))
    else
      health.warn('the server did not answer heedls/status')
    end
  else
    health.info('not attached to any buffer yet (open a Python file)')
  end
end

return M
