-- heedls language server configuration for `vim.lsp.config` / `vim.lsp.enable` (Neovim 0.11+).
--
--   vim.lsp.enable('heedls')                       -- zero configuration
--   vim.lsp.config('heedls', { init_options = { provider = { name = 'ollama' } } })
--
-- The command is resolved when the config is first used: vim.g.heedls.cmd, else `heedls` on PATH,
-- else the project's .venv/venv interpreter (`python -m heedls serve`), else `heedls serve` (which
-- then fails to start; `:checkhealth heedls` says why and how to install it).
local heedls = require('heedls')

---@type vim.lsp.Config
return {
  cmd = heedls.server_cmd(),
  filetypes = { 'python' },
  root_markers = { 'pyproject.toml', 'setup.py', 'setup.cfg', 'requirements.txt', '.git' },
  -- camelCase keys under the server's section names (see :help heedls-settings)
  init_options = heedls.server_settings(),
  settings = { heedls = heedls.server_settings() },
  capabilities = heedls.capabilities(),
}
