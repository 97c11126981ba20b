"""LSP feature modules; each exposes `register(server)`."""

from heedls.server.features import (
    code_actions,
    commands,
    diagnostics,
    documents,
    hover,
    inline,
    lifecycle,
)

FEATURES = [lifecycle, documents, inline, commands, diagnostics, hover, code_actions]
