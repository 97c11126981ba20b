"""The self-contained test runner started in the workspace interpreter (see heedls_repair_runner.py)."""
