-- Minimal Neovim config for the end-to-end tests: only the heedls plugin from this checkout, and
-- zero heedls configuration beyond what the test asks for (HEEDLS_TEST_OPTIONS, JSON).
local repo = assert(vim.env.HEEDLS_REPO, 'HEEDLS_REPO not set')
vim.opt.runtimepath:prepend(repo .. '/editors/nvim')
vim.opt.swapfile = false
vim.opt.shadafile = 'NONE'
vim.opt.updatetime = 100
vim.opt.termguicolors = true
vim.opt.number = true
vim.opt.expandtab = true
vim.opt.shiftwidth = 4
vim.opt.softtabstop = 4
if vim.env.HEEDLS_TEST_OPTIONS and vim.env.HEEDLS_TEST_OPTIONS ~= '' then
  vim.g.heedls = vim.json.decode(vim.env.HEEDLS_TEST_OPTIONS)
end
vim.lsp.enable('heedls')
-- The plugin's statusline component ("heedls", "heedls 12% hidden", "heedls off").
vim.o.laststatus = 2
vim.o.statusline = "%f %m%=%{v:lua.require'heedls'.statusline()}   %l,%c "
