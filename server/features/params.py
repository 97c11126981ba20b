"""Reading the params of custom methods (heedls/…), whatever shape pygls hands them over in."""

from __future__ import annotations

from typing import Any


def field(params: Any, name: str) -> Any:
    """A named field of custom-method params: a dict, an attribute object, or a positional list.

    pygls turns JSON objects of custom methods into namedtuples, which are tuples too: read them by
    name first, or a client that orders keys differently (Neovim's Lua tables) has its
    `{"reason", "id"}` read positionally.
    """
    if params is None:
        return None
    if isinstance(params, dict):
        return params.get(name)
    if hasattr(params, "_fields") or not isinstance(params, (list, tuple)):
        return getattr(params, name, None)
    return params[0] if params and name == "id" else None
