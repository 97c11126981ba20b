"""heedls.server — the LSP layer, the suggestion pipeline, the acceptance model, telemetry and the CLI."""
