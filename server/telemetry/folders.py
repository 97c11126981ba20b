"""One event store per workspace folder: the live server's event sink in a multi-root window.

`heedls telemetry export` run in a folder reads `store_path(folder, that folder's telemetry
settings)`; so each suggestion event goes to the store of the workspace folder that holds its
document (the innermost one, for nested folders), and an event of a document in no folder to the
start-up folder's store (the *default* store; with a single folder the only one, as before).

- The engine announces each new event with `bind(event_id, path)` before recording it; every later
  snapshot of that event (shown, accepted/rejected, the persistence checkpoints) is recorded by id
  and goes to the same folder's store, whatever document the editor shows by then.
- A folder's store is opened on its first event (the default one at once, as before), each on its
  own writer thread (`TelemetryStore`): folders share nothing mutable, and writing never waits on
  the caller. A store that cannot be opened warns once and drops that folder's events only.
- `configure` follows the folders and their settings: a folder removed from the workspace has its
  store closed (flushed: nothing already recorded is lost); a folder whose `enabled`, `privacy`,
  `path` or `max_size_mb` changed gets the store its new settings ask for (or none) from the next
  event on, as the default store always has.
- A removed folder keeps its telemetry settings (`enabled`, `privacy`, `path`, `max_size_mb`) as
  they were when it left, whatever the window's settings do afterwards: an update of one of its events that arrives
  later (an accept in flight, the persistence checkpoints up to 600 s after an accept) opens that
  same store again, with those settings (nothing when its telemetry was off), and is never written
  to another folder's store. The store is closed again once no update has come for `retain_s`
  (the last checkpoint and a margin): `expire()`, which the server calls at `next_expiry()`. The
  settings stay with the events' routes, so even a later update (an accept of a suggestion shown
  long before) reopens the store rather than being dropped. One change of the window's settings
  does reach them: telemetry turned off. From then on their late updates are not recorded either.

Calls come from the event loop (record, bind, configure, expire); closing stores blocks (a flush),
so `configure` and `expire` return the stores to close and the caller closes them off the loop.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heedls.server.config import FOLDER_STORE_SETTINGS, TelemetryConfig, folder_of, resolved
from heedls.server.events import SuggestionEvent
from heedls.server.telemetry.paths import store_path
from heedls.server.telemetry.persistence import CHECKPOINTS

log = logging.getLogger(__name__)

# opens the store for (the folder its relative paths start from, its settings); None when disabled
Opener = Callable[[Path | None, TelemetryConfig], Any]

# How long a removed folder's store stays open after its last update: the last persistence
# checkpoint (600 s after an accept) and a margin for a check that runs late (the next keystroke).
RETAIN_S = CHECKPOINTS[-1][0] + 60.0


def store_settings(config: TelemetryConfig) -> tuple[Any, ...]:
    return tuple(getattr(config, name) for name in FOLDER_STORE_SETTINGS)


@dataclass(eq=False)  # a slot is one folder's place: compared by identity
class _Slot:
    """One folder's store (`folder` None: the default store, for the start-up folder `base`)."""

    folder: Path | None
    base: Path | None
    config: TelemetryConfig
    store: Any = None
    opened: bool = False  # open attempted (the store, or None when disabled or failed)
    removed: bool = False  # the folder left the workspace; kept for late updates of its events
    until: float = 0.0  # removed: its store (if open) is closed from then on (clock time)
    dropped: bool = False  # no longer recorded at all (shutdown)

    @property
    def name(self) -> str:
        return "the start-up folder" if self.folder is None else f"folder {self.folder}"


class FolderStores:
    """An `EventSink` that routes each event to its workspace folder's store (module docstring)."""

    def __init__(self, opener: Opener, root: Path | None, config: TelemetryConfig, *,
                 store: Any = None, warn: Callable[[str], None] | None = None, max_routes: int = 50_000,
                 retain_s: float = RETAIN_S, clock: Callable[[], float] = time.monotonic,
                 on_late: Callable[[], None] | None = None) -> None:
        """`store`: the default store when it is open already (else opened now, as `opener` says).
        `on_late`: called when a removed folder's store opens again (the caller then makes sure
        `expire()` runs at `next_expiry()`)."""
        self._opener = opener
        self._warn = warn or (lambda message: log.warning("%s", message))
        self._retain_s = retain_s
        self._clock = clock
        self._on_late = on_late
        self._root = resolved(root) if root is not None else None
        self._default = _Slot(None, root, config)
        if store is not None:
            self._default.store, self._default.opened = store, True
        else:
            self._open(self._default)
        self._folders: dict[Path, _Slot] = {}  # the workspace folders but the start-up one
        self._keys: dict[Path, _Slot] = {}  # every workspace folder (the start-up one: the default)
        self._removed: list[_Slot] = []
        # event id -> the slot of another folder than the default's (an unknown id: the default)
        self._routes: OrderedDict[str, _Slot] = OrderedDict()
        self._max_routes = max(1, max_routes)
        self._where: dict[str, _Slot] = {}  # document path -> slot, for the folders as they are
        self._closed = False

    # -- the sink ------------------------------------------------------------------------------
    @property
    def default(self) -> Any:
        """The default store (start-up folder's, and of documents in no folder), or None."""
        return self._default.store

    def bind(self, event_id: str, path: str | None) -> None:
        """`event_id` is a new event of the document at `path`: its snapshots go to that
        document's folder's store from now on."""
        if not self._folders or not path:
            return  # one folder: everything is the default store's, nothing to remember
        slot = self._where.get(path)
        if slot is None:
            slot = self._slot_of(path)
            if len(self._where) >= 4096:
                self._where.clear()
            self._where[path] = slot
        if slot is self._default:
            return
        self._routes[event_id] = slot
        if len(self._routes) > self._max_routes:
            self._routes.popitem(last=False)

    def record(self, event: SuggestionEvent) -> None:
        slot = self._routes.get(event.id, self._default)
        if slot.dropped or self._closed:  # closed: a slot `expire` forgot must not open again either
            return
        if slot.removed:
            self._late(slot)
        elif not slot.opened:
            self._open(slot)
        if slot.store is not None:
            slot.store.record(event)

    def _late(self, slot: _Slot) -> None:
        """An update of an event of a removed folder: its store, as its settings were when it left,
        open until `retain_s` after this update (an accept's checkpoints follow it by up to 600 s)."""
        slot.until = self._clock() + self._retain_s
        if slot not in self._removed:
            self._removed.append(slot)  # its store was closed and forgotten by `expire`: tracked again
        if not slot.opened:
            self._open(slot)
            if slot.store is not None and self._on_late is not None:
                self._on_late()

    # -- folders and settings ------------------------------------------------------------------
    def configure(self, config: TelemetryConfig, folders: Mapping[Path, TelemetryConfig]) -> tuple[list[Any], list[str]]:
        """The window's telemetry settings now (the default store's) and each workspace folder's
        (keyed by resolved path). Returns (stores to close, one line per store whose settings
        changed). A folder whose store settings are unchanged keeps its open store."""
        to_close: list[Any] = []
        changes: list[str] = []
        if self._closed:
            return to_close, changes  # shut down: nothing opens again
        window_changed = store_settings(config) != store_settings(self._default.config)
        if window_changed and not config.enabled:
            to_close += self._stop_removed()  # telemetry turned off: off wins for removed folders too
        # Removed folders keep their own settings (module docstring): the window's change is not theirs.
        to_close += self.expire()
        if window_changed:
            to_close += self._retire(self._default)
            self._default.config = config
            self._open(self._default)
            changes.append(self._describe(self._default))
        else:
            self._default.config = config  # the timings may have changed: same store
        wanted = {folder: cfg for folder, cfg in folders.items() if folder != self._root}
        for folder in list(self._folders):
            if folder not in wanted:
                gone = self._folders.pop(folder)
                to_close += self._retire(gone)  # flushed now; a late update opens it again
                gone.removed = True
                gone.until = self._clock() + self._retain_s
                self._removed.append(gone)
        for folder, cfg in wanted.items():
            found = self._folders.get(folder)
            if found is None:
                found = next((old for old in self._removed if old.folder == folder), None)
                if found is None:
                    self._folders[folder] = _Slot(folder, folder, cfg)
                    continue
                self._removed.remove(found)  # removed and added again: its events' updates go on there
                found.removed = False
                self._folders[folder] = found
            slot = found
            if store_settings(cfg) != store_settings(slot.config):
                was_open = slot.store is not None
                to_close += self._retire(slot)
                slot.config = cfg
                if was_open:
                    changes.append(self._describe(slot))
            else:
                slot.config = cfg
        self._keys = dict(self._folders)
        if self._root is not None and self._root in folders:
            self._keys[self._root] = self._default
        self._where.clear()
        return to_close, changes

    def expire(self) -> list[Any]:
        """The stores of removed folders with no update for `retain_s`, to close (off the loop).
        Their folders' settings stay with their events' routes: an update still to come opens
        the store again (`record`)."""
        now = self._clock()
        to_close: list[Any] = []
        for slot in [slot for slot in self._removed if slot.until <= now]:
            to_close += self._retire(slot)
            self._removed.remove(slot)
        return to_close

    def _stop_removed(self) -> list[Any]:
        """Every removed folder's store closed and its late updates no longer recorded: the user
        turned telemetry off for the window after it left, and its own settings can no longer be
        asked, so its old "on" must not outlive that choice."""
        to_close: list[Any] = []
        for slot in {*self._removed, *(s for s in self._routes.values() if s.removed)}:
            to_close += self._retire(slot)
            slot.dropped = True
        self._removed.clear()
        return to_close

    def next_expiry(self) -> float | None:
        """Seconds until `expire()` has a store to close, or None when no removed folder's store is open."""
        dues = [slot.until for slot in self._removed if slot.store is not None]
        return max(0.0, min(dues) - self._clock()) if dues else None

    def stores(self) -> list[Any]:
        """Every store open now (the default first)."""
        return [slot.store for slot in self._slots() if slot.store is not None]

    def sources(self, path: str | None = None) -> list[Any]:
        """What a report reads: the store (or its file) of the folder holding `path`, or with
        None, of every folder of the window and the default one; each store file once. An open
        store is given as the store (its queue is flushed when read), one not opened this session
        as its path when the file exists; disabled folders have none."""
        if path is not None:
            chosen = [self._slot_of(path)]
        else:
            chosen = [self._default, *self._folders.values()]
        seen: set[Path] = set()
        found: list[Any] = []
        for slot in chosen:
            if slot.store is not None:
                target: Path | None = Path(slot.store.path)
            elif slot.config.enabled and not slot.opened:
                target = self._path_of(slot)
            else:
                target = None
            if target is None or (slot.store is None and not target.exists()):
                continue
            key = resolved(target)
            if key not in seen:
                seen.add(key)
                found.append(slot.store if slot.store is not None else target)
        return found

    def close(self) -> None:
        """Flush and close every store (shutdown); later events are dropped, as a closed store
        drops them. Blocks: call it off the event loop."""
        self._closed = True
        slots = list(self._slots())
        for slot in slots:  # first: an event recorded meanwhile must not open a store again
            slot.dropped = True
        for slot in slots:
            for store in self._retire(slot):
                try:
                    store.close()
                except Exception:
                    log.exception("telemetry store of %s did not close cleanly", slot.name)

    # -- inside --------------------------------------------------------------------------------
    def _slots(self) -> Iterator[_Slot]:
        yield self._default
        yield from self._folders.values()
        yield from self._removed

    def _slot_of(self, path: str) -> _Slot:
        if not self._folders:
            return self._default
        # the innermost folder holding it, the start-up folder among them (its store is the default)
        folder = folder_of(resolved(Path(path)), self._keys)
        return self._keys[folder] if folder is not None else self._default

    def _path_of(self, slot: _Slot) -> Path | None:
        try:
            return store_path(slot.base if slot.base is not None else Path.cwd(), slot.config)
        except Exception:
            return None

    def _open(self, slot: _Slot) -> None:
        slot.opened = True
        slot.store = None
        if not slot.config.enabled:
            return
        try:
            slot.store = self._opener(slot.base, slot.config)
        except Exception as exc:  # only this folder's events are lost
            what = "suggestions are not recorded" if slot.folder is None else f"suggestions in {slot.folder} are not recorded"
            self._warn(f"telemetry store unavailable ({exc}); {what}")

    @staticmethod
    def _retire(slot: _Slot) -> list[Any]:
        store, slot.store, slot.opened = slot.store, None, False
        return [store] if store is not None else []

    def _describe(self, slot: _Slot) -> str:
        if not slot.config.enabled:
            state = "off"
        else:
            where = slot.store.path if slot.store is not None else self._path_of(slot)
            state = f"privacy {slot.config.privacy}, store {where if where is not None else '?'}"
            if slot.config.max_size_mb > 0:
                state += f", size cap {slot.config.max_size_mb:g} MB"
        return state if slot.folder is None else f"{state} (for {slot.folder})"
