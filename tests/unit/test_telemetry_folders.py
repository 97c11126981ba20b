"""The live server's event sink in a multi-root window (telemetry/folders.py): each suggestion event
goes to the store of the workspace folder that holds its document, the store `heedls telemetry …`
reads when run in that folder; every later snapshot of an event goes where its first one went."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from heedls.server.config import TelemetryConfig, load, load_folders
from heedls.server.events import SuggestionEvent
from heedls.server.telemetry.folders import FolderStores
from heedls.server.telemetry.paths import store_path
from heedls.server.telemetry.service import open_store
from heedls.server.telemetry.store import read_events


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HEEDLS_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def _folders(tmp_path: Path, *names: str) -> list[Path]:
    made = []
    for name in names:
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        made.append(folder)
    return made


def _sink(root: Path, folders: list[Path], opener: Any = None, warnings: list[str] | None = None) -> FolderStores:
    """As the server builds it: the folders' configuration from load_folders."""
    config, per_folder, _ = load_folders(folders)
    sink = FolderStores(opener or open_store, root, config.telemetry,
                        warn=warnings.append if warnings is not None else None)
    sink.configure(config.telemetry, {folder: each.telemetry for folder, each in per_folder.items()})
    return sink


def _event(ident: str, text: str = "x = 1") -> SuggestionEvent:
    return SuggestionEvent(id=ident, session="s", ts=1_700_000_000.0, prefix="def f():\n    ", suggestion=text, shown=True)


def _suggest(sink: FolderStores, ident: str, path: Path, text: str = "x = 1") -> SuggestionEvent:
    event = _event(ident, text)
    sink.bind(ident, str(path))  # what the engine does for each new event
    sink.record(event)
    return event


def _ids_in_store_of(folder: Path) -> dict[str, SuggestionEvent]:
    """What `heedls telemetry export` run in `folder` reads (the CLI resolves the path this way)."""
    path = store_path(folder, load(folder)[0].telemetry)
    return {event.id: event for event in read_events(path)} if path.exists() else {}


def test_each_event_goes_to_the_store_of_the_folder_holding_its_document(tmp_path: Path) -> None:
    app, lib, nested = _folders(tmp_path, "app", "lib", "app/vendored")
    (tmp_path / "loose").mkdir()
    sink = _sink(app, [app, lib, nested])
    _suggest(sink, "in-app", app / "main.py")
    _suggest(sink, "in-lib", lib / "pkg" / "util.py")
    _suggest(sink, "in-nested", nested / "dep.py")  # the innermost folder holding it
    _suggest(sink, "in-no-folder", tmp_path / "loose" / "scratch.py")  # the start-up folder's
    sink.close()

    assert set(_ids_in_store_of(app)) == {"in-app", "in-no-folder"}
    assert set(_ids_in_store_of(lib)) == {"in-lib"}
    assert set(_ids_in_store_of(nested)) == {"in-nested"}


def test_later_snapshots_of_an_event_go_to_the_store_it_was_first_written_to(tmp_path: Path) -> None:
    """Accept, reject and the persistence checkpoints are recorded by id, with no document."""
    app, lib = _folders(tmp_path, "app", "lib")
    sink = _sink(app, [app, lib])
    event = _suggest(sink, "h-1", lib / "m.py")
    _suggest(sink, "h-2", app / "m.py")  # another document in between
    event.outcome = "accepted"
    sink.record(event)
    event.persisted_30s = True
    sink.record(event)
    sink.close()

    assert _ids_in_store_of(lib)["h-1"].persisted_30s is True
    assert _ids_in_store_of(lib)["h-1"].outcome == "accepted"
    assert set(_ids_in_store_of(app)) == {"h-2"}


def test_a_folders_own_store_settings_come_from_its_pyproject(tmp_path: Path) -> None:
    """`privacy` and `path` in a folder's [tool.heedls.telemetry] decide that folder's store (the
    one `heedls telemetry export` resolves there); the start-up folder's stay its own."""
    app, lib = _folders(tmp_path, "app", "lib")
    (lib / "pyproject.toml").write_text('[tool.heedls.telemetry]\nprivacy = "nocode"\npath = ".heedls/events.db"\n')
    sink = _sink(app, [app, lib])
    _suggest(sink, "lib-1", lib / "m.py", "SECRET = 1")
    _suggest(sink, "app-1", app / "m.py", "VISIBLE = 1")
    sink.close()

    assert (lib / ".heedls" / "events.db").exists()
    stored = _ids_in_store_of(lib)["lib-1"]
    assert stored.suggestion is None and stored.extra["suggestion_len"] == len("SECRET = 1")
    assert _ids_in_store_of(app)["app-1"].suggestion == "VISIBLE = 1"


def test_one_folder_writes_only_the_start_up_store_as_before(tmp_path: Path, data_dir: Path) -> None:
    (app,) = _folders(tmp_path, "app")
    opened: list[Path | None] = []

    def opener(base: Path | None, config: TelemetryConfig) -> Any:
        opened.append(base)
        return open_store(base, config)

    sink = _sink(app, [app], opener)
    _suggest(sink, "h-1", tmp_path / "elsewhere.py")
    _suggest(sink, "h-2", app / "m.py")
    sink.close()
    assert opened == [app]
    assert set(_ids_in_store_of(app)) == {"h-1", "h-2"}
    assert len(list(data_dir.rglob("events.sqlite3"))) == 1


def test_stores_open_on_a_folders_first_event_and_close_when_it_leaves(tmp_path: Path) -> None:
    app, lib, docs = _folders(tmp_path, "app", "lib", "docs")
    config = TelemetryConfig()
    sink = _sink(app, [app, lib, docs])
    assert len(sink.stores()) == 1  # the start-up folder's only: lib and docs have had no event
    event = _suggest(sink, "lib-1", lib / "m.py")
    lib_store = sink.stores()[1]
    assert Path(lib_store.path) == store_path(lib, config)

    to_close, changes = sink.configure(config, {app.resolve(): config, docs.resolve(): config})
    assert to_close == [lib_store] and changes == []  # lib removed: its store to be flushed and closed
    for store in to_close:
        store.close()
    assert set(_ids_in_store_of(lib)) == {"lib-1"}  # nothing lost

    event.outcome = "accepted"  # an accept that arrives after the folder left
    sink.record(event)
    sink.close()
    assert _ids_in_store_of(lib)["lib-1"].outcome == "accepted"  # its own store, never app's
    assert set(_ids_in_store_of(app)) == set()


def test_turning_telemetry_off_or_to_nocode_applies_to_every_folder_store(tmp_path: Path) -> None:
    app, lib = _folders(tmp_path, "app", "lib")
    sink = _sink(app, [app, lib])
    _suggest(sink, "app-1", app / "m.py")
    _suggest(sink, "lib-1", lib / "m.py")
    open_before = sink.stores()
    assert len(open_before) == 2

    nocode = TelemetryConfig(privacy="nocode")
    to_close, changes = sink.configure(nocode, {app.resolve(): nocode, lib.resolve(): nocode})
    assert sorted(map(id, to_close)) == sorted(map(id, open_before))
    assert len(changes) == 2 and all("privacy nocode" in line for line in changes)
    for store in to_close:
        store.close()
    _suggest(sink, "app-2", app / "m.py", "CODE_A = 1")
    _suggest(sink, "lib-2", lib / "m.py", "CODE_B = 1")

    off = TelemetryConfig(enabled=False)
    to_close, changes = sink.configure(off, {app.resolve(): off, lib.resolve(): off})
    assert len(to_close) == 2 and changes[0] == "off"
    for store in to_close:
        store.close()
    _suggest(sink, "app-3", app / "m.py")
    _suggest(sink, "lib-3", lib / "m.py")
    assert sink.stores() == []
    sink.close()

    for folder, name in ((app, "app"), (lib, "lib")):
        stored = _ids_in_store_of(folder)
        assert set(stored) == {f"{name}-1", f"{name}-2"}  # nothing after "off"
        assert stored[f"{name}-2"].suggestion is None  # nocode from the change on


def test_a_store_that_cannot_be_opened_drops_only_its_folders_events_with_one_warning(tmp_path: Path) -> None:
    app, lib = _folders(tmp_path, "app", "lib")
    warnings: list[str] = []

    def opener(base: Path | None, config: TelemetryConfig) -> Any:
        if base == lib.resolve():
            raise OSError("no space left on device")
        return open_store(base, config)

    sink = _sink(app, [app, lib], opener, warnings)
    for i in range(3):
        _suggest(sink, f"lib-{i}", lib / "m.py")
        _suggest(sink, f"app-{i}", app / "m.py")
    sink.close()
    assert warnings == [f"telemetry store unavailable (no space left on device); suggestions in {lib.resolve()} are not recorded"]
    assert set(_ids_in_store_of(app)) == {"app-0", "app-1", "app-2"}  # never lib's code in app's store
    assert _ids_in_store_of(lib) == {}


def test_a_report_reads_every_folders_store_or_one_documents_folder(tmp_path: Path) -> None:
    app, lib, docs = _folders(tmp_path, "app", "lib", "docs")
    sink = _sink(app, [app, lib, docs])
    _suggest(sink, "app-1", app / "m.py")
    _suggest(sink, "lib-1", lib / "m.py")
    sources = sink.sources()
    assert [Path(getattr(s, "path", s)) for s in sources] == [store_path(app), store_path(lib)]  # docs: nothing yet
    assert [Path(s.path) for s in sink.sources(str(lib / "m.py"))] == [store_path(lib)]
    sink.close()


def test_a_store_shared_by_two_folders_is_read_once(tmp_path: Path) -> None:
    app, lib = _folders(tmp_path, "app", "lib")
    shared = replace(TelemetryConfig(), path=str(tmp_path / "all.sqlite3"))
    sink = FolderStores(open_store, app, shared)
    sink.configure(shared, {app.resolve(): shared, lib.resolve(): shared})
    _suggest(sink, "app-1", app / "m.py")
    _suggest(sink, "lib-1", lib / "m.py")
    assert len(sink.sources()) == 1
    sink.close()
    assert {e.id for e in read_events(tmp_path / "all.sqlite3")} == {"app-1", "lib-1"}


async def test_the_engine_tells_the_sink_which_document_each_new_event_is_of(tmp_path: Path) -> None:
    """The engine's events (shown, accepted, rejected) reach the store of their document's folder."""
    from heedls.server.config import HeedlsConfig
    from heedls.server.pipeline.engine import SuggestionEngine
    from heedls.server.providers.static import StaticProvider

    app, lib = _folders(tmp_path, "app", "lib")
    sink = _sink(app, [app, lib])
    base = HeedlsConfig()
    engine = SuggestionEngine(StaticProvider("total = 1"), replace(base, inline=replace(base.inline, debounce_ms=0)), sink=sink)
    doc = "def f():\n    "
    in_lib = await engine.suggest((lib / "m.py").as_uri(), str(lib / "m.py"), doc, len(doc), 1, 4)
    in_app = await engine.suggest((app / "m.py").as_uri(), str(app / "m.py"), doc, len(doc), 1, 4)
    assert in_lib is not None and in_app is not None
    engine.resolve(in_lib.id, "accepted")
    engine.resolve(in_app.id, "rejected", "dismissed")
    sink.close()

    assert {e.id: e.outcome for e in _ids_in_store_of(lib).values()} == {in_lib.id: "accepted"}
    assert {e.id: e.outcome for e in _ids_in_store_of(app).values()} == {in_app.id: "rejected"}


def test_after_close_nothing_is_recorded_or_opened_again(tmp_path: Path) -> None:
    app, lib = _folders(tmp_path, "app", "lib")
    sink = _sink(app, [app, lib])
    _suggest(sink, "lib-1", lib / "m.py")
    sink.close()
    _suggest(sink, "lib-2", lib / "m.py")  # a persistence timer firing during shutdown
    _suggest(sink, "app-2", app / "m.py")
    assert sink.configure(TelemetryConfig(privacy="nocode"), {}) == ([], [])
    assert sink.stores() == []
    assert set(_ids_in_store_of(lib)) == {"lib-1"} and _ids_in_store_of(app) == {}


def test_a_change_in_one_folders_settings_replaces_that_folders_store_only(tmp_path: Path) -> None:
    """A folder's pyproject.toml saved with `privacy = "nocode"`: its store follows from the next
    event on; the other folders keep theirs open, untouched."""
    app, lib = _folders(tmp_path, "app", "lib")
    sink = _sink(app, [app, lib])
    _suggest(sink, "app-1", app / "m.py")
    _suggest(sink, "lib-1", lib / "m.py")
    app_store, lib_store = sink.stores()

    full, nocode = TelemetryConfig(), TelemetryConfig(privacy="nocode")
    to_close, changes = sink.configure(full, {app.resolve(): full, lib.resolve(): nocode})
    assert to_close == [lib_store]
    assert changes == [f"privacy nocode, store {store_path(lib)} (for {lib.resolve()})"]
    lib_store.close()
    _suggest(sink, "lib-2", lib / "m.py", "CODE = 2")
    assert sink.stores()[0] is app_store
    sink.close()
    assert _ids_in_store_of(lib)["lib-2"].suggestion is None
    assert _ids_in_store_of(lib)["lib-1"].suggestion == "x = 1"  # written before: kept as it was


def test_a_folders_size_cap_is_its_own_and_a_change_of_it_reopens_its_store_with_it(tmp_path: Path) -> None:
    app, lib = _folders(tmp_path, "app", "lib")
    (lib / "pyproject.toml").write_text("[tool.heedls.telemetry]\nmax_size_mb = 100\n")
    sink = _sink(app, [app, lib])
    _suggest(sink, "app-1", app / "m.py")
    _suggest(sink, "lib-1", lib / "m.py")
    app_store, lib_store = sink.stores()
    assert (app_store.max_size_mb, lib_store.max_size_mb) == (0.0, 100.0)

    capped = TelemetryConfig(max_size_mb=50.0)  # the start-up folder's (the window's) cap changes
    lib_own = TelemetryConfig(max_size_mb=100.0)
    to_close, changes = sink.configure(capped, {app.resolve(): capped, lib.resolve(): lib_own})
    assert to_close == [app_store] and changes == [f"privacy full, store {store_path(app)}, size cap 50 MB"]
    app_store.close()
    _suggest(sink, "app-2", app / "m.py")
    assert sink.stores()[0].max_size_mb == 50.0 and sink.stores()[1] is lib_store
    sink.close()


def test_a_start_up_folder_inside_another_folder_keeps_its_own_documents(tmp_path: Path) -> None:
    """Nested folders: the innermost one holding a document decides, the start-up folder too."""
    outer = tmp_path / "mono"
    app = outer / "services" / "app"
    app.mkdir(parents=True)
    sink = _sink(app, [app, outer])
    _suggest(sink, "in-app", app / "main.py")
    _suggest(sink, "in-outer", outer / "tools" / "x.py")
    sink.close()
    assert set(_ids_in_store_of(app)) == {"in-app"}
    assert set(_ids_in_store_of(outer)) == {"in-outer"}


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_late_updates_of_a_removed_folders_events_survive_a_change_of_the_windows_settings(tmp_path: Path) -> None:
    """Folder lib leaves the window, then the editor's telemetry settings change (here to nocode and
    another store file): an accept in flight and the persistence checkpoints of lib's suggestion
    still reach lib's store, with lib's settings as they were when it left (full: its code kept)."""
    app, lib = _folders(tmp_path, "app", "lib")
    sink = _sink(app, [app, lib])
    event = _suggest(sink, "lib-1", lib / "m.py", "KEPT = 1")
    full = TelemetryConfig()
    for store in sink.configure(full, {app.resolve(): full})[0]:  # lib removed
        store.close()
    moved = TelemetryConfig(privacy="nocode", path=str(tmp_path / "elsewhere.sqlite3"))
    for store in sink.configure(moved, {app.resolve(): moved})[0]:  # the window's settings change
        store.close()

    event.outcome = "accepted"
    sink.record(event)
    event.persisted_30s = event.persisted_120s = event.persisted_600s = True
    sink.record(event)
    sink.close()

    stored = _ids_in_store_of(lib)["lib-1"]
    assert stored.outcome == "accepted" and stored.persisted_600s is True
    assert stored.suggestion == "KEPT = 1"  # lib's own privacy, not the window's new one
    assert "lib-1" not in {e.id for e in read_events(tmp_path / "elsewhere.sqlite3")}


def test_telemetry_turned_off_after_a_folder_left_stops_its_late_updates_too(tmp_path: Path) -> None:
    """Off wins: the user turns telemetry off for the window after lib left (lib's own settings,
    still "on", can no longer be asked): a late accept of lib's suggestion is not recorded."""
    app, lib = _folders(tmp_path, "app", "lib")
    sink = _sink(app, [app, lib])
    event = _suggest(sink, "lib-1", lib / "m.py")
    full = TelemetryConfig()
    for store in sink.configure(full, {app.resolve(): full})[0]:  # lib removed
        store.close()
    off = TelemetryConfig(enabled=False)
    for store in sink.configure(off, {app.resolve(): off})[0]:  # telemetry turned off
        store.close()
    event.outcome = "accepted"
    sink.record(event)
    assert sink.stores() == [] and sink.next_expiry() is None
    sink.close()
    stored = _ids_in_store_of(lib)["lib-1"]
    assert stored.outcome is None  # as it was written before lib left, not the late accept


def test_a_removed_folder_with_telemetry_off_gets_nothing_written(tmp_path: Path) -> None:
    app, lib = _folders(tmp_path, "app", "lib")
    (lib / "pyproject.toml").write_text("[tool.heedls.telemetry]\nenabled = false\n")
    sink = _sink(app, [app, lib])
    event = _suggest(sink, "lib-1", lib / "m.py")
    full = TelemetryConfig()
    sink.configure(full, {app.resolve(): full})  # lib removed (it had no store)
    sink.configure(TelemetryConfig(privacy="nocode"), {app.resolve(): full})
    event.outcome = "accepted"
    sink.record(event)
    assert sink.stores() == [sink.default] and sink.next_expiry() is None
    sink.close()
    assert _ids_in_store_of(lib) == {} and "lib-1" not in _ids_in_store_of(app)


def test_a_removed_folders_store_closes_once_its_late_updates_are_over(tmp_path: Path) -> None:
    """Reopened for a late update, the store stays open for the persistence window after it (the
    checkpoints follow an accept by up to 600 s), then `expire` hands it back to be closed; an
    update later still opens it again rather than being dropped."""
    app, lib = _folders(tmp_path, "app", "lib")
    clock = _Clock()
    late: list[bool] = []
    config, per_folder, _ = load_folders([app, lib])
    sink = FolderStores(open_store, app, config.telemetry, clock=clock, retain_s=660.0, on_late=lambda: late.append(True))
    sink.configure(config.telemetry, {folder: each.telemetry for folder, each in per_folder.items()})
    event = _suggest(sink, "lib-1", lib / "m.py")
    full = TelemetryConfig()
    for store in sink.configure(full, {app.resolve(): full})[0]:
        store.close()
    assert sink.next_expiry() is None  # closed with the folder: nothing open to expire

    clock.now += 100
    event.outcome = "accepted"
    sink.record(event)  # reopens lib's store
    assert late == [True] and sink.next_expiry() == 660.0
    clock.now += 600
    event.persisted_600s = True
    sink.record(event)  # the last checkpoint: open until 660 s after it
    assert sink.expire() == [] and sink.next_expiry() == 660.0
    clock.now += 660
    [lib_store] = sink.expire()
    lib_store.close()
    assert sink.next_expiry() is None and sink.stores() == [sink.default]

    clock.now += 5000
    event.extra["late"] = True
    sink.record(event)  # long after: still lib's store, with lib's settings
    assert len(late) == 2
    sink.close()
    stored = _ids_in_store_of(lib)["lib-1"]
    assert stored.outcome == "accepted" and stored.persisted_600s is True and stored.extra["late"] is True


async def test_the_server_closes_a_reopened_store_of_a_removed_folder_when_its_window_is_over(tmp_path: Path) -> None:
    """The server's side: a late update reopens the store, a loop timer closes it (flushed) after
    `retain_s`, with no settings change or shutdown needed."""
    import asyncio
    from types import SimpleNamespace

    from heedls.server.features.inline import _expire_later

    app, lib = _folders(tmp_path, "app", "lib")
    config, per_folder, _ = load_folders([app, lib])
    server = SimpleNamespace(services={}, notify_log=lambda message: None)
    sink = FolderStores(open_store, app, config.telemetry, retain_s=0.2, on_late=lambda: _expire_later(server))  # type: ignore[arg-type]
    server.services["telemetry_folders"] = sink
    sink.configure(config.telemetry, {folder: each.telemetry for folder, each in per_folder.items()})
    event = _suggest(sink, "lib-1", lib / "m.py")
    for store in sink.configure(config.telemetry, {app.resolve(): config.telemetry})[0]:
        store.close()

    event.outcome = "accepted"
    sink.record(event)
    assert len(sink.stores()) == 2
    for _ in range(50):
        await asyncio.sleep(0.05)
        if len(sink.stores()) == 1:
            break
    assert sink.stores() == [sink.default]
    assert _ids_in_store_of(lib)["lib-1"].outcome == "accepted"  # flushed on closing
    sink.close()
