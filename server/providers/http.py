"""The one shared `httpx.AsyncClient` and the JSON-over-HTTP helpers every HTTP provider uses.

One client per process (per event loop, to be exact: an AsyncClient's connection pool belongs to
the loop that opened it) keeps connections to the model server warm, which matters when a
completion must come back in a few hundred milliseconds. The client (or only its transport) is
the test seam: providers accept an injected client, and `make_client(transport=...)` builds one
around `httpx.MockTransport`.

Every failure of the backend (timeout, refused connection, HTTP status, a body that is not the
JSON we expect) becomes `ProviderError`, whose message is safe to log: it never carries the API
key, the request body (code) or the response body (which may echo code); those go to DEBUG only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import ipaddress
import json
import logging
import math
import re
import socket
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx
from heedls.server.config import ProviderConfig
from heedls.server.providers.base import Candidate, CompletionRequest, ProviderError

from heedls import __version__

log = logging.getLogger("heedls.providers")

# Completions are small; a model server answering with megabytes is broken (or not a model server).
MAX_RESPONSE_BYTES = 4 * 1024 * 1024

# A suggestion is a few lines (`max_tokens` tokens); an answer far longer than that is a broken
# server. Capped before post-processing, caching, telemetry and the editor ever see it.
MAX_SUGGESTION_CHARS = 16 * 1024
# Content-Encoding layers we undo ourselves, each bounded (httpx would inflate a gzip bomb whole).
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
MAX_ENCODINGS = 2

# Per-phase timeouts are only a backstop: each request also runs under the caller's deadline.
DEFAULT_TIMEOUT = httpx.Timeout(connect=3.0, read=60.0, write=10.0, pool=3.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=8, keepalive_expiry=60.0)


class HTTPStatusProviderError(ProviderError):
    """The server answered with an error status; `status` lets providers pick a fallback route."""

    def __init__(self, message: str, status: int, detail: str = "", retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        # The server's own error text (truncated); may echo input, so only logged at DEBUG.
        self.detail = detail
        # From a 429/503 `Retry-After` header: the server told us how long to stay away.
        self.retry_after_s = retry_after_s


# -- name lookups ---------------------------------------------------------------------------------
#
# httpx (httpcore over anyio) looks a host name up with the event loop's getaddrinfo, on the loop's
# default thread pool (min(32, cores + 4) threads, 6 on 2 cores). A request given up at its deadline,
# or cancelled by the next keystroke, leaves its lookup running; against a resolver that hangs, a few
# keystrokes filled that pool, and every `asyncio.to_thread` of the server (syntax check, ruff, test
# runs) then waited for DNS. So the providers' lookups run here instead: on heedls' own daemon
# threads (never the loop's pool; a process can exit with one still hanging), one lookup per host at
# a time that every request for that host waits on, at most MAX_LOOKUPS hosts at once, and an answer
# kept for LOOKUP_TTL_S.

MAX_LOOKUPS = 4
LOOKUP_TTL_S = 10.0
HAPPY_EYEBALLS_DELAY_S = 0.25  # RFC 8305's "connection attempt delay", as anyio uses


class Resolver:
    """getaddrinfo for TCP connections: single-flight per (host, port), on daemon threads, cached briefly."""

    def __init__(self, max_lookups: int = MAX_LOOKUPS, ttl_s: float = LOOKUP_TTL_S,
                 lookup: Callable[..., Any] | None = None) -> None:
        self.max_lookups = max_lookups
        self.ttl_s = ttl_s
        self._lookup = lookup  # None: socket.getaddrinfo as it is when called (tests patch it)
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], concurrent.futures.Future[list[str]]] = {}
        self._cache: dict[tuple[str, int], tuple[float, list[str]]] = {}

    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    async def resolve(self, host: str, port: int) -> list[str]:
        """The host's addresses, IPv6 first then IPv4 then the rest (as anyio orders them).
        Raises OSError (socket.gaierror) when the lookup fails."""
        key = (host, port)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
            future = self._pending.get(key)
            if future is None:
                if len(self._pending) >= self.max_lookups:
                    raise OSError(f"{len(self._pending)} name lookups are already in flight")
                future = concurrent.futures.Future()
                try:
                    threading.Thread(target=self._run, args=(key, future), name=f"heedls-dns {host}",
                                     daemon=True).start()
                except RuntimeError as exc:  # "can't start new thread": nothing left pending
                    raise OSError(f"cannot look {host} up: {exc}") from exc
                self._pending[key] = future
        # A waiter of its own: a request giving up must not cancel the lookup the others wait for.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[list[str]] = loop.create_future()

        def hand_over(done: concurrent.futures.Future[list[str]]) -> None:
            try:
                loop.call_soon_threadsafe(_settle, waiter, done)
            except RuntimeError:  # that event loop is closed: nobody waits any more
                pass

        future.add_done_callback(hand_over)
        return await waiter

    def _run(self, key: tuple[str, int], future: concurrent.futures.Future[list[str]]) -> None:
        try:
            lookup = self._lookup or socket.getaddrinfo
            infos = lookup(key[0], key[1], type=socket.SOCK_STREAM)
            addresses = _ordered(infos)
            if not addresses:
                raise socket.gaierror(socket.EAI_NONAME, "no addresses")
        except BaseException as exc:  # noqa: BLE001 - handed to the waiters
            with self._lock:
                self._pending.pop(key, None)
            future.set_exception(exc)
            return
        with self._lock:
            self._pending.pop(key, None)
            self._cache[key] = (time.monotonic() + self.ttl_s, addresses)
            if len(self._cache) > 64:  # hosts come from the settings: a handful; never a leak
                self._cache.clear()
        future.set_result(addresses)


def _settle(waiter: asyncio.Future[list[str]], done: concurrent.futures.Future[list[str]]) -> None:
    if waiter.done():  # the request gave up (cancelled, out of time)
        return
    exc = done.exception()
    if exc is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(done.result())


def _ordered(found: Iterable[Any]) -> list[str]:
    infos = list(found)
    v6 = [i[4][0] for i in infos if i[0] == socket.AF_INET6]
    v4 = [i[4][0] for i in infos if i[0] == socket.AF_INET]
    ordered: list[str] = []
    for address in [*v6[:1], *v4[:1], *v6[1:], *v4[1:]]:
        if isinstance(address, str) and address not in ordered:
            ordered.append(address)
    return ordered


_resolver = Resolver()


class ResolvingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the host name looked up by `Resolver`, then connected by
    address (IPv6 first, the next address tried HAPPY_EYEBALLS_DELAY_S later, first to connect
    wins). TLS still verifies and sends the host name: httpcore passes it to start_tls itself."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, resolver: Resolver | None = None) -> None:
        self.inner = inner
        self.resolver = resolver or _resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:  # an address already: nothing to look up
            return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            async with asyncio.timeout(timeout):
                addresses = await self.resolver.resolve(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"name lookup of {host} took longer than {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return await self._connect_first(addresses, port, timeout, local_address, socket_options)

    async def _connect_first(self, addresses: list[str], port: int, timeout: float | None,
                             local_address: str | None, socket_options: Iterable[Any] | None,
                             ) -> httpcore.AsyncNetworkStream:
        options = list(socket_options or [])
        attempts: list[asyncio.Task[httpcore.AsyncNetworkStream]] = []
        errors: list[BaseException] = []
        winner: httpcore.AsyncNetworkStream | None = None
        try:
            for i, address in enumerate(addresses):
                attempts.append(asyncio.ensure_future(
                    self.inner.connect_tcp(address, port, timeout, local_address, options)))
                last = i == len(addresses) - 1
                while winner is None:
                    running = [t for t in attempts if not t.done()]
                    if not running:
                        break
                    done, _ = await asyncio.wait(running, timeout=None if last else HAPPY_EYEBALLS_DELAY_S,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        if task.exception() is None and winner is None:
                            winner = task.result()
                        elif task.exception() is not None:
                            errors.append(task.exception())  # type: ignore[arg-type]
                    if not done or not last and any(t.exception() is not None for t in done):
                        break  # the delay passed, or an attempt failed: start the next address now
                if winner is not None:
                    return winner
        finally:
            for task in attempts:
                if not task.done():
                    task.cancel()
            if attempts:  # each cancelled attempt ends (or had just connected)
                await asyncio.wait(attempts)
            for task in attempts:
                if not task.cancelled() and task.exception() is None and task.result() is not winner:
                    await task.result().aclose()  # connected too late: not needed
        raise errors[0] if errors else httpcore.ConnectError(f"cannot connect to port {port}")

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return await self.inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def _resolving_transport(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """httpx's own transport (as AsyncClient would build it) with `ResolvingBackend` under it."""
    transport = httpx.AsyncHTTPTransport(trust_env=False, limits=limits)
    pool = getattr(transport, "_pool", None)
    inner = getattr(pool, "_network_backend", None)
    if isinstance(inner, httpcore.AsyncNetworkBackend):
        pool._network_backend = ResolvingBackend(inner)  # type: ignore[union-attr]
    else:  # another httpx/httpcore layout: the loop's lookups, as before
        log.debug("httpx transport without a network backend to wrap; name lookups use the event loop's")
    return transport


def make_client(
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    limits: httpx.Limits = DEFAULT_LIMITS,
) -> httpx.AsyncClient:
    """A client with sane limits. `transport` is the seam for `httpx.MockTransport` in tests."""
    return httpx.AsyncClient(
        transport=transport if transport is not None else _resolving_transport(limits),
        timeout=timeout,
        limits=limits,
        # Model servers are local or explicitly configured; proxies from the environment would
        # route `localhost:11434` through a corporate proxy and break offline use.
        trust_env=False,
        follow_redirects=False,
        headers={"User-Agent": f"heedls/{__version__}"},
    )


_shared: httpx.AsyncClient | None = None
_shared_loop: asyncio.AbstractEventLoop | None = None


def shared_client() -> httpx.AsyncClient:
    """The process-wide client, created on first use in the running event loop."""
    global _shared, _shared_loop
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if _shared is None or _shared.is_closed or (loop is not None and _shared_loop is not loop):
        # A client left behind by a finished loop cannot be closed from here; its sockets were
        # already torn down with that loop, so dropping the reference is all that is left to do.
        _shared = make_client()
        _shared_loop = loop
    return _shared


async def aclose_shared_client() -> None:
    """Close the shared client (server shutdown). Safe to call when none was created."""
    global _shared, _shared_loop
    client, _shared, _shared_loop = _shared, None, None
    if client is not None and not client.is_closed:
        await client.aclose()


def redact_url(url: str) -> str:
    """The URL without user:password and query string (either may hold a credential)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:  # unparsable, or a port that is not a number
        return "<invalid url>"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def join_url(endpoint: str, path: str) -> str:
    return endpoint.rstrip("/") + "/" + path.lstrip("/")


def _scrub(text: str, secret: str) -> str:
    """`text` with the secret masked as it is and as error messages quote it (repr: a \\r in a
    key shows as a backslash and an r), and with any `Bearer …` value masked whatever it holds."""
    if secret:
        for form in {secret, repr(secret)[1:-1], secret.encode("utf-8", "backslashreplace").decode("ascii", "replace"),
                     str(secret.encode("utf-8", "surrogateescape"))[2:-1]}:
            if form:
                text = text.replace(form, "***")
    return _BEARER.sub("Bearer ***", text)


_BEARER = re.compile(r"Bearer\s+[^\s'\"]+")


class _Inflater:
    """One Content-Encoding layer undone with a bound on its output: a few kilobytes of gzip must
    not become gigabytes in memory (nor seconds of a blocked event loop) before the size cap can
    look at them."""

    def __init__(self, name: str, limit: int, where: str) -> None:
        self.name = name
        self.limit = limit
        self.where = where
        self.produced = 0
        self._decoder = zlib.decompressobj(_DECODERS[name])
        self._raw_deflate_tried = name != "deflate"

    def feed(self, data: bytes) -> bytes:
        if not data or self._decoder.eof:  # bytes after the end of the stream are ignored, as httpx does
            return b""
        room = self.limit - self.produced
        try:
            out = self._decoder.decompress(data, room + 1)  # never more than one byte past the limit
        except zlib.error as exc:
            if self._raw_deflate_tried or self.produced:
                raise ProviderError(f"{self.where}: response is not valid {self.name} data") from exc
            # `deflate` is meant to be zlib-wrapped, but some servers send raw deflate (httpx's rule).
            self._raw_deflate_tried = True
            self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.feed(data)
        self._raw_deflate_tried = True
        return self._count(out)

    def flush(self) -> bytes:
        try:
            return self._count(self._decoder.flush())
        except zlib.error as exc:
            raise ProviderError(f"{self.where}: response is not valid {self.name} data") from exc

    def _count(self, out: bytes) -> bytes:
        self.produced += len(out)
        if self.produced > self.limit:
            raise ProviderError(f"{self.where}: response larger than {self.limit} bytes once decompressed")
        return out


def _inflaters(headers: httpx.Headers, where: str) -> list[_Inflater]:
    """The decoders for the response's Content-Encoding, in the order they must run."""
    names = [n.strip().lower() for n in headers.get_list("content-encoding", split_commas=True)]
    # Unknown names are passed over, as httpx does: we asked for gzip or deflate only, and servers
    # write odd things there ("none", "utf-8"); an answer really encoded otherwise is not JSON.
    names = [n for n in names if n in _DECODERS]
    if len(names) > MAX_ENCODINGS:
        raise ProviderError(f"{where}: response is compressed {len(names)} times over")
    return [_Inflater(name, MAX_RESPONSE_BYTES, where) for name in reversed(names)]


def _decoded(inflaters: list[_Inflater], data: bytes, *, final: bool = False) -> bytes:
    for inflater in inflaters:
        data = inflater.feed(data)
        if final:
            data += inflater.flush()
    return data


async def _read_body(response: httpx.Response, where: str) -> bytearray:
    """The decoded body, at most MAX_RESPONSE_BYTES of it before and after decompression: raw
    bytes decoded here with a bound per layer (see _Inflater), never by httpx."""
    if response.is_stream_consumed:
        # Built from bytes (`httpx.Response(content=...)`, as httpx.MockTransport handlers do):
        # httpx has read and decoded it already. A response from the network never is.
        body = bytearray(response.content)
        if len(body) > MAX_RESPONSE_BYTES:
            raise ProviderError(f"{where}: response larger than {MAX_RESPONSE_BYTES} bytes")
        return body
    inflaters = _inflaters(response.headers, where)
    body = bytearray()
    raw = 0
    async for chunk in response.aiter_raw():
        raw += len(chunk)
        body += _decoded(inflaters, chunk)
        if len(body) > MAX_RESPONSE_BYTES or raw > MAX_RESPONSE_BYTES:
            raise ProviderError(f"{where}: response larger than {MAX_RESPONSE_BYTES} bytes")
    body += _decoded(inflaters, b"", final=True)
    if len(body) > MAX_RESPONSE_BYTES:
        raise ProviderError(f"{where}: response larger than {MAX_RESPONSE_BYTES} bytes")
    return body


def printable(text: str, limit: int) -> str:
    """At most `limit` characters of `text`, each one that does not print shown as `?` (for a
    message quoting what a server or a setting holds)."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _why(exc: httpx.HTTPError, api_key: str) -> str:
    """A transport error, said so a user can act on it (some have no text of their own)."""
    # The text may quote what the server sent (h11 quotes a bad header line): printable only.
    reason = printable(_scrub(str(exc), api_key), 200)
    if not reason or reason == type(exc).__name__:
        reason = {
            "ReadError": "the connection broke while reading the answer (reset by the server?)",
            "WriteError": "the connection broke while sending the request",
            "ConnectError": "cannot connect",
        }.get(type(exc).__name__, "")
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    payload: Mapping[str, Any],
    *,
    deadline_s: float,
    api_key: str = "",
    headers: Mapping[str, str] | None = None,
) -> Any:
    """POST `payload` as JSON and return the decoded JSON body, all within `deadline_s`.

    Raises ProviderError (HTTPStatusProviderError for error statuses) for every backend failure,
    including running out of time. `asyncio.CancelledError` (a superseded request) propagates.
    """
    if deadline_s <= 0:
        raise ProviderError(f"no time left for {redact_url(url)}")
    # Only what `_inflaters` can undo, whatever optional decoders httpx finds installed.
    send_headers = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
    if headers:
        send_headers.update(headers)
    api_key = api_key.strip()  # a key from a .env saved with CRLF, or pasted with a space
    if any(ord(c) < 32 or ord(c) == 127 for c in api_key):  # no header can carry it: say so, never show it
        raise ProviderError(f"{redact_url(url)}: the API key has control characters in it")
    if not api_key.isascii():  # a typographic quote or dash pasted with it: httpx could not encode it
        raise ProviderError(f"{redact_url(url)}: the API key has non-ASCII characters in it")
    if api_key:
        send_headers["Authorization"] = f"Bearer {api_key}"
    # httpx's per-phase timeouts cannot bound the whole exchange (a server trickling bytes resets
    # the read timeout forever), so the overall deadline is asyncio's; httpx's is a backstop.
    per_phase = httpx.Timeout(deadline_s)
    where = redact_url(url)
    try:
        async with asyncio.timeout(deadline_s):
            async with client.stream(
                "POST", url, json=dict(payload), headers=send_headers, timeout=per_phase
            ) as response:
                status = response.status_code
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                location = response.headers.get("location") if 300 <= status < 400 else None
                try:
                    body = await _read_body(response, where)
                except ProviderError:
                    if status < 400:
                        raise
                    # An error's text is only a detail for the log: its status (a 429's Retry-After)
                    # still counts, whatever junk came with it.
                    body = bytearray()
    except TimeoutError as exc:
        raise ProviderError(f"{where}: no answer within {deadline_s * 1000:.0f} ms") from exc
    except httpx.TimeoutException as exc:
        raise ProviderError(f"{where}: timed out ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        # The exception text names the URL or the socket error, never headers; scrub anyway.
        raise ProviderError(f"{where}: {_why(exc, api_key)}") from exc
    except (httpx.InvalidURL, OSError, ValueError) as exc:  # e.g. an invalid URL in the settings
        raise ProviderError(f"{where}: {type(exc).__name__}") from exc

    if status >= 400:
        detail = _scrub(_error_detail(bytes(body).decode("utf-8", errors="replace")), api_key)
        log.debug("%s answered HTTP %d: %s", where, status, detail)
        raise HTTPStatusProviderError(f"{where}: HTTP {status}", status, detail, retry_after)
    if location is not None:
        # Not followed: the key would go wherever the server says. Where to is the user's to fix.
        raise ProviderError(f"{where}: HTTP {status} redirect (not followed: set provider.endpoint to "
                            f"the URL it points to)")
    if status != 200:
        raise ProviderError(f"{where}: unexpected HTTP {status}")
    try:  # text the user would get: never with U+FFFD standing in for bytes that were not UTF-8
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProviderError(f"{where}: response is not UTF-8 ({len(body)} bytes)") from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:  # [[[[... 100k levels: not an answer, and not a reason to crash
        raise ProviderError(f"{where}: response is JSON nested too deeply ({len(body)} bytes)") from exc
    except ValueError as exc:
        log.debug("%s answered with non-JSON (%d bytes)", where, len(body))
        raise ProviderError(f"{where}: response is not JSON ({len(body)} bytes{_streamed(text)})") from exc


def _streamed(text: str) -> str:
    """Why a body is not one JSON object, when it is a stream although none was asked for (a proxy
    or a server ignoring `"stream": false`): server-sent events, or one JSON object a line."""
    head = text.lstrip()[:200]
    if head.startswith(("data:", "event:")):
        return "; server-sent events: the server streamed although asked not to"
    first = head.split("\n", 1)[0].strip()
    if first.startswith("{") and first.endswith("}") and "\n" in text.strip():
        return "; one JSON object a line: the server streamed although asked not to"
    return ""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None when absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON; a server emitting them is producing garbage.
    raise ValueError(f"invalid JSON constant {name}")


def _error_detail(text: str) -> str:
    """The server's error message, from the usual shapes ({"error": "..."} or {"error": {"message"}})."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return text[:300]
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data))
        if isinstance(err, dict):
            err = err.get("message", err)
        return str(err)[:300]
    return text[:300]


# -- parsing helpers shared by the providers -----------------------------------------------------


def require_dict(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ProviderError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return data


# Characters no code suggestion has and a terminal or an editor may act on: C0 controls other than
# tab, line feed, form feed and carriage return, DEL, C1 controls (ESC [ and CSI start terminal
# escape sequences, which `heedls complete` would print).
_CONTROL = re.compile(r"[\x01-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def require_text(value: Any, where: str) -> str:
    """A completion text field: must be a string without NUL bytes (binary junk is garbage),
    control characters or lone surrogates (JSON's "\\ud800": no UTF-8 can carry it, so neither
    the editor's JSON nor a terminal could)."""
    if not isinstance(value, str):
        raise ProviderError(f"{where}: expected text, got {type(value).__name__}")
    if "\x00" in value:
        raise ProviderError(f"{where}: text contains NUL bytes")
    if _CONTROL.search(value):
        raise ProviderError(f"{where}: text contains control characters")
    if _SURROGATE.search(value):
        raise ProviderError(f"{where}: text contains lone surrogates (not Unicode text)")
    return value


def limit_suggestion(text: str, where: str) -> str:
    """An inline suggestion of at most MAX_SUGGESTION_CHARS: the whole lines that fit. A model
    that ignores `max_tokens` must not put megabytes into the cache, the telemetry or the editor."""
    if len(text) <= MAX_SUGGESTION_CHARS:
        return text
    cut = text.rfind("\n", 0, MAX_SUGGESTION_CHARS + 1)
    if cut <= 0:
        raise ProviderError(f"{where}: answer of {len(text)} characters without a line break")
    return text[: cut + 1]


# A token's log-probability is at most 0; below this it is nil for any purpose (e^-1000), and a
# server's -1e308 twice summed to -inf, which reached the event store as "-Infinity" (not JSON).
MIN_TOKEN_LOGPROB = -1000.0


def confidence_from_logprobs(logprobs: list[Any]) -> tuple[float | None, float | None]:
    """(sum of token logprobs, mean token probability) or (None, None) when there are none.

    The mean per-token probability is what the acceptance gate uses as `confidence`: unlike the
    sequence probability it does not punish longer suggestions. Only finite numbers count (not
    true/false, strings or nested values), each held to [MIN_TOKEN_LOGPROB, 0] (a "logprob" of 5,
    or a probability of 7, is a server's error, not certainty beyond 1): both results are finite."""
    values = [min(0.0, max(MIN_TOKEN_LOGPROB, float(v))) for v in logprobs
              if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if not values:
        return None, None
    total = math.fsum(values)
    mean_prob = sum(math.exp(v) for v in values) / len(values)
    return total, mean_prob


MAX_LABEL_CHARS = 200


def server_label(value: Any) -> str | None:
    """A short name the server gave (the model that answered, a finish reason) as something safe to
    keep in a candidate, the event store and the status: printable text of at most MAX_LABEL_CHARS,
    else None (a 100 KB "model" went into every event; an object as finish reason into the meta)."""
    if not isinstance(value, str) or not value or len(value) > MAX_LABEL_CHARS or not value.isprintable():
        return None
    return value


# <|fim_prefix|> (Qwen, DeepSeek, StarCoder2 <|file_sep|>), <fim_prefix> (StarCoder), <PRE> <SUF>
# <MID> <EOT> (CodeLlama), <｜fim▁hole｜> (DeepSeek-Coder v1), </s> and <eos> (end of sequence leaking through as text).
_SPECIAL_TOKEN = re.compile(
    r"<\|[^|<>\s]{1,40}\|>|<｜[^｜<>\s]{1,40}｜>|<(?:fim|FIM)[_-][A-Za-z_]{1,20}>|<(?:PRE|SUF|MID|EOT)>"
    r"|</s>|<eos>"
)
_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:\n```|$)", re.DOTALL)


def special_tokens(template: str) -> list[str]:
    """The special tokens a FIM template uses (`<|fim_middle|>`, `<fim_suffix>`, ...), in order."""
    seen: list[str] = []
    for token in _SPECIAL_TOKEN.findall(template):
        if token not in seen:
            seen.append(token)
    return seen


def stop_tokens(template: str) -> list[str]:
    """Markers that must end the generated middle: the template's tokens except the one it ends
    with (that one precedes the middle, e.g. <|fim_middle|>)."""
    tail = template.rstrip()
    return [t for t in special_tokens(template) if not tail.endswith(t)]


def cut_at_special_tokens(text: str) -> str:
    """Models sometimes run past the middle into the next FIM/file marker: keep what came before."""
    match = _SPECIAL_TOKEN.search(text)
    return text[: match.start()] if match else text


def fill_template(template: str, prefix: str, suffix: str) -> str:
    """Substitute {prefix}/{suffix} in one pass: code contains braces (and even the text
    "{suffix}"), so neither str.format nor two str.replace calls are safe."""
    values = {"prefix": prefix, "suffix": suffix}
    return re.sub(r"\{(prefix|suffix)\}", lambda m: values[m.group(1)], template)


def strip_fences(text: str) -> str:
    """Chat models wrap code in ```lang fences despite being asked not to: keep the inside."""
    match = _FENCE.search(text)
    return match.group(1) if match else text


def strip_echo(text: str, request: CompletionRequest) -> str:
    """An answer that starts over from the top of the file (the whole file with the gap filled in,
    or the prompt echoed back): only what follows the text before the cursor, or nothing. Never
    the start of the file inserted at the cursor."""
    prefix = request.prefix
    if len(prefix.strip()) < 20:  # too little text to tell an echo from a completion
        return text
    if text.startswith(prefix):
        return text[len(prefix):]
    body = text.lstrip()
    if body.startswith(("File ", "<|fim_prefix|>")):  # the question itself (chat) or the FIM prompt
        body = body.split("\n", 1)[-1] if body.startswith("File ") else body[len("<|fim_prefix|>"):]
    top = [ln.strip() for ln in prefix.split("\n", 12) if ln.strip()][:2]
    if len(top) == 2 and [ln.strip() for ln in body.split("\n", 12) if ln.strip()][:2] == top:
        return ""  # the file's first two lines again: it started over, not where the cursor is
    return text


def clean_fim_completion(text: str, request: CompletionRequest, where: str = "") -> str:
    """A FIM answer without special tokens, without markdown fences around it (small models add
    them anyway) and without an echo of the prompt, at most MAX_SUGGESTION_CHARS long."""
    text = limit_suggestion(cut_at_special_tokens(text), where or "provider")
    if text.lstrip().startswith("```"):
        text = strip_fences(text)
    return strip_echo(text, request)


# -- the common part of the HTTP providers ----------------------------------------------------------

CURSOR = "<CURSOR>"

_CHAT_SYSTEM = (
    "You are a code completion engine inside a code editor. You receive one {language} file in which "
    "the cursor is marked " + CURSOR + ". Reply with exactly the text to insert at the cursor and "
    "nothing else: no explanation, no markdown fences, and do not repeat the code before or after "
    "the cursor. Complete at most {max_lines} lines. If nothing should be inserted, reply with an "
    "empty message."
)


def completion_messages(request: CompletionRequest) -> list[dict[str, str]]:
    """Chat messages asking a chat model for the insertion at the cursor (chat mode)."""
    system = _CHAT_SYSTEM.format(language=request.language or "code", max_lines=request.max_lines)
    name = request.path.rsplit("/", 1)[-1] if request.path else "untitled"
    user = f"File {name}:\n{request.prefix}{CURSOR}{request.suffix}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def clean_chat_completion(text: str, request: CompletionRequest, where: str = "") -> str:
    """Undo the usual chat-model habits: fences, an echoed cursor marker or file, the current line
    retyped. At most MAX_SUGGESTION_CHARS long."""
    text = limit_suggestion(strip_fences(text).replace(CURSOR, ""), where or "provider")
    text = strip_echo(text, request)
    line_before = request.prefix.rsplit("\n", 1)[-1].lstrip()
    stripped = text.lstrip()
    if line_before and stripped.startswith(line_before):
        text = stripped[len(line_before) :]
    return text


class Budget:
    """Time left of a budget, for a second request (a fallback route) inside the same deadline."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        return self._end - time.monotonic()


class HTTPProvider:
    """Shared plumbing: endpoint, model, key resolution and the (injected or shared) client.

    Subclasses implement `complete` and `chat`. They raise ProviderError on any backend failure;
    FallbackProvider turns that into local suggestions and a breaker tick."""

    name = "http"

    def __init__(self, config: ProviderConfig, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        # A query string (Azure OpenAI's `?api-version=…`) goes after the API path on every request,
        # not before it; a fragment is never sent.
        endpoint, _, self.query = config.endpoint.strip().split("#", 1)[0].partition("?")
        self.endpoint = endpoint.rstrip("/")
        self.model = config.model
        self._client = client

    @property
    def client(self) -> httpx.AsyncClient:
        return self._client if self._client is not None else shared_client()

    @property
    def where(self) -> str:
        return redact_url(self.endpoint)

    def url(self, path: str) -> str:
        return join_url(self.endpoint, path)

    async def post(self, path: str, payload: Mapping[str, Any], deadline_s: float) -> dict[str, Any]:
        url = path if path.startswith(("http://", "https://")) else self.url(path)
        if self.query:
            url += ("&" if "?" in url else "?") + self.query
        data = await post_json(
            self.client,
            url,
            payload,
            deadline_s=deadline_s,
            # Resolved per request: the environment variable may be set after start-up.
            api_key=self.config.resolved_api_key(),
        )
        return require_dict(data, redact_url(url))

    async def complete(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
        raise NotImplementedError

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        n: int = 1,
        deadline_s: float,
    ) -> list[str]:
        raise NotImplementedError

    async def aclose(self) -> None:
        # The client is shared (closed by aclose_shared_client at shutdown) or injected (closed
        # by whoever injected it): nothing of ours to release.
        return None

    def __repr__(self) -> str:  # never shows the key
        return f"{type(self).__name__}(endpoint={self.where!r}, model={self.model!r})"


async def gather_n(
    n: int, one: Callable[[], Awaitable[str]], where: str
) -> list[str]:
    """Run `one` n times concurrently (for servers without an `n` parameter); keep the answers
    that arrived, raise the first error only when none did."""
    results = await asyncio.gather(*(one() for _ in range(max(1, n))), return_exceptions=True)
    texts: list[str] = []
    errors: list[BaseException] = []
    for result in results:
        if isinstance(result, asyncio.CancelledError):
            raise result
        if isinstance(result, BaseException):
            errors.append(result)
        else:
            texts.append(result)
    if not texts and errors:
        first = errors[0]
        if isinstance(first, ProviderError):
            raise first
        raise ProviderError(f"{where}: {type(first).__name__}") from first
    return texts
