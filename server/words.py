"""Counts in the command lines' messages, in the singular where there is one ("1 file", "2 batches")."""

from __future__ import annotations


def counted(count: int, noun: str) -> str:
    """`count` and `noun`, the noun's plural unless the count is 1 (-es after ch, s, sh, x)."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun}{'es' if noun.endswith(('ch', 's', 'sh', 'x')) else 's'}"
