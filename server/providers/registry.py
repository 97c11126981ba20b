"""From `ProviderConfig` to a ready provider: `local` as is, an HTTP provider behind a fallback.

A configuration that cannot work (an HTTP provider without an endpoint, an endpoint that is not
an http(s) URL, Ollama without a model) is reported once as a warning and serves `local`: a
settings typo must never leave the user with no suggestions and no explanation.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
from heedls.server.config import ProviderConfig
from heedls.server.providers.base import Provider
from heedls.server.providers.breaker import CircuitBreaker
from heedls.server.providers.fallback import FallbackProvider, tell
from heedls.server.providers.http import HTTPProvider, printable, redact_url
from heedls.server.providers.llamacpp import LlamaCppProvider
from heedls.server.providers.ollama import OllamaProvider
from heedls.server.providers.openai import OpenAIProvider

log = logging.getLogger("heedls.providers")

HTTP_PROVIDERS: dict[str, type[HTTPProvider]] = {
    "openai": OpenAIProvider,
    "ollama": OllamaProvider,
    "llamacpp": LlamaCppProvider,
}


def config_problems(config: ProviderConfig) -> list[str]:
    """Why this configuration cannot work (empty when it can)."""
    if config.name == "local":
        return []
    if config.name not in HTTP_PROVIDERS:
        return [f"unknown provider {config.name!r}"]
    problems = []
    endpoint = config.endpoint.strip()
    if not endpoint:
        problems.append("provider.endpoint is not set")
    else:
        try:
            parts = urlsplit(endpoint)
            _ = parts.port  # raises ValueError for a bad port
        except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", ...
            problems.append(f"provider.endpoint {_shown(endpoint)!r} is not an http(s) URL ({printable(str(exc), 80)})")
        else:
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.append(f"provider.endpoint {_shown(endpoint)!r} is not an http(s) URL")
    if config.name == "ollama" and not config.model:
        problems.append("provider.model is not set (Ollama needs the model name, e.g. qwen2.5-coder:1.5b)")
    return problems


def _shown(endpoint: str) -> str:
    """The endpoint as the user wrote it, for a message, even when it does not parse: without a
    user:password part or a query string (either may hold a credential)."""
    text = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*:/*)[^/?#]*@", r"\1", endpoint)
    text = re.split(r"[?#]", text, maxsplit=1)[0]
    return printable(text, 100) or "<empty>"


def _is_local_host(host: str) -> bool:
    if host in ("localhost", "") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_provider(
    config: ProviderConfig,
    local: Provider,
    client: httpx.AsyncClient | None = None,
    *,
    on_warning: Callable[[str], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> Provider:
    """The provider the configuration asks for. `on_warning` receives user-facing messages (the
    server logs them and forwards them as window/logMessage; `heedls complete` prints them);
    without it they are logged as warnings here."""

    if config.name == "local":
        return local
    problems = config_problems(config)
    if problems:
        tell(on_warning, f"provider {config.name}: {'; '.join(problems)}; using the local provider")
        return local
    parts = urlsplit(config.endpoint.strip())
    if parts.scheme == "http" and config.resolved_api_key() and not _is_local_host(parts.hostname or ""):
        tell(on_warning, f"provider {config.name}: the API key is sent unencrypted to {redact_url(config.endpoint)}")
    if config.name == "openai" and not config.model:
        # llama.cpp and some proxies ignore the model; OpenAI and vLLM answer 400 (-> fallback).
        log.info("provider openai: provider.model is empty; the server's default model is used")
    primary = HTTP_PROVIDERS[config.name](config, client)
    breaker = CircuitBreaker(
        config.breaker_failures, config.breaker_cooldown_s, clock=clock or time.monotonic
    )
    return FallbackProvider(primary, local, breaker, config.deadline_ms, on_warning=on_warning)
