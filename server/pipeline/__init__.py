"""The suggestion pipeline: debounce → stage-1 gate → cache → provider → post-process → stage-2 gate."""
