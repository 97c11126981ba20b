-- heedls language server configuration for `vim.lsp.config` / `vim.lsp.enable` (Neovim 0.11+).
--
--   vim.lsp.enable('heedls')                       -- zero configuration
--   vim.lsp.config('heedls', { init_options = { provider = { name = 'ollama' } } })
--
-- The command is resolved for each project as its server starts: vim.g.heedls.cmd, else `heedls`
-- on PATH, else that project's .venv/venv interpreter (`python -P -m heedls serve`), else
-- nothing: the server is not started, one message says so (`:checkhealth heedls` says why and how
-- to install it).
local heedls = require('heedls')
local root_markers = { 'pyproject.toml', 'setup.py', 'setup.cfg', 'requirements.txt', '.git' }

---@type vim.lsp.Config
return {
  -- A function, so that each project gets its own .venv: Neovim 0.11.3+ passes the resolved config
  -- (its root_dir); before that, the buffer being attached is the current one.
  cmd = function(dispatchers, config)
    local root = config and config.root_dir or nil
    local cmd = heedls.resolve_cmd(root)
    if config then
      config.heedls_cmd = cmd -- what was started, for :checkhealth and the tests
    end
    return vim.lsp.rpc.start(cmd, dispatchers)
  end,
  filetypes = { 'python' },
  root_markers = root_markers,
  -- The project root from root_markers, as without this function; but a server that cannot start
  -- (not installed, vim.g.heedls.cmd wrong) is not started: one message says so and points to
  -- :checkhealth heedls, instead of Neovim's spawn error for every Python buffer opened.
  root_dir = function(bufnr, on_dir)
    local config = vim.lsp.config.heedls or {}
    local root = vim.fs.root(bufnr, config.root_markers or root_markers)
    if heedls.can_start(root, config) then
      on_dir(root)
    end
  end,
  -- camelCase keys under the server's section names (see :help heedls-settings)
  init_options = heedls.server_settings(),
  settings = { heedls = heedls.server_settings() },
  capabilities = heedls.capabilities(),
}
