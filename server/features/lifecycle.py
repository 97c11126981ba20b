"""initialize / initialized / didChangeConfiguration: where the configuration layers come from."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from heedls.analyzers.proc import pid_alive
from heedls.server import config as config_mod
from heedls.server.app import HeedlsServer  # runtime import: pygls reads handler type hints
from heedls.server.features.documents import use_lsp_documents
from heedls.server.watched import Change, WatchedFiles
from lsprotocol import types
from pygls import uris

log = logging.getLogger(__name__)


def _folder_paths(folders: Sequence[types.WorkspaceFolder] | None) -> list[Path]:
    """The folders' paths on this machine. A URI that names none is left out: another scheme, or
    a path that is not absolute here (a Windows client's `file:///c%3A/…` is `c:/…` to pygls),
    which became a folder under the server's working directory."""
    paths = (uris.to_fs_path(folder.uri) for folder in folders or [])
    return list(dict.fromkeys(Path(path) for path in paths if path and os.path.isabs(path)))


def _given_root(params: types.InitializeParams) -> Path | None:
    """The root of a client that names no workspace folders: rootUri, else rootPath."""
    if params.root_uri:
        path = uris.to_fs_path(params.root_uri)
        if path and os.path.isabs(path):
            return Path(path)
    if params.root_path:
        return Path(params.root_path)
    return None


def _only_folders(ls: HeedlsServer, paths: list[Path], *, told: Collection[Path] = ()) -> list[Path]:
    """`paths` without those that are files, each said once in the editor's log (except those in
    `told`). A file sent as a workspace folder (or root) became the folder holding that very file:
    ruff and pytest were started in it (NotADirectoryError) and its events went to a store of its
    own. It is taken as no folder; a path that does not exist (yet) stays, as it holds nothing."""
    kept = []
    for path in paths:
        if os.path.exists(path) and not os.path.isdir(path):  # os.path: False, not an error, when unreadable
            if path not in told:
                ls.notify_log(f"{path} is a file, not a folder: it is not taken as a workspace folder")
        else:
            kept.append(path)
    return kept


class _ProjectFile:
    """Re-reads the configuration when the workspace's pyproject.toml is saved in the editor (or
    changes on disk, for a client that reports watched files): [tool.heedls] edits apply at once."""

    def __init__(self, server: HeedlsServer) -> None:
        self.server = server

    def _is_project_file(self, uri: str) -> bool:
        """A pyproject.toml at the top of a workspace folder (each folder's configures its documents)."""
        if not unquote(uri.rpartition("/")[2]) == "pyproject.toml":  # cheap: a checkout reports thousands
            return False
        path = uris.to_fs_path(uri)
        if not path or Path(path).name != "pyproject.toml":
            return False
        folder = Path(path).parent.resolve()
        roots = set(self.server.folder_configs) | ({self.server.root.resolve()} if self.server.root else set())
        return folder in roots

    async def on_save(self, uri: str) -> None:
        if self._is_project_file(uri):
            await self.server.reload_config()


async def _files_changed(server: HeedlsServer, project_file: _ProjectFile, changes: list[Change]) -> None:
    """One coalesced batch of watched-file changes (server/watched.py): each (uri, type) once."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug("watched files handled: %s", "; ".join(f"{types.FileChangeType(kind).name} {uri}" for uri, kind in changes))
    if any(project_file._is_project_file(uri) for uri, _ in changes):
        await server.reload_config()
    deleted = [uri for uri, kind in changes if kind == types.FileChangeType.Deleted]
    if deleted:
        await server.dispatch("on_deleted", deleted)  # their diagnostics go (a renamed test file's too)
    modules = list(dict.fromkeys(uri for uri, _ in changes if uri.endswith(".py")))  # created and changed: once
    if modules:
        await server.dispatch("on_files_changed", modules)  # the local provider's index re-reads them


def register(server: HeedlsServer) -> None:
    project_file = _ProjectFile(server)
    server.document_listeners.append(project_file)
    watched = WatchedFiles(lambda changes: _files_changed(server, project_file, changes))

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    async def on_watched_files(ls: HeedlsServer, params: types.DidChangeWatchedFilesParams) -> None:
        if log.isEnabledFor(logging.DEBUG):  # as received: the editor's end-to-end test counts them
            log.debug("watched files: %s", "; ".join(f"{types.FileChangeType(c.type).name} {c.uri}" for c in params.changes))
        # VS Code repeats each report in a multi-root window: the work waits for the burst to end
        watched.add((change.uri, int(change.type)) for change in params.changes)

    @server.feature(types.INITIALIZE)
    async def on_initialize(ls: HeedlsServer, params: types.InitializeParams) -> None:
        use_lsp_documents(ls)
        given = _folder_paths(params.workspace_folders)
        ls.folders = _only_folders(ls, given)
        if ls.folders:
            ls.root = ls.folders[0]
        else:  # the root a client gives otherwise; a file there is as no root (said once, if a folder too)
            root = _given_root(params)
            ls.root = root if root is not None and _only_folders(ls, [root], told=given) else None
            ls.folders = [ls.root] if ls.root is not None else []
        ls.init_options = params.initialization_options
        if isinstance(params.process_id, int) and params.process_id > 0 and params.process_id != os.getpid():
            ls.services["parent_watch"] = asyncio.ensure_future(_watch_parent(params.process_id))
        await ls.reload_config()

    @server.feature(types.INITIALIZED)
    async def on_initialized(ls: HeedlsServer, params: types.InitializedParams) -> None:
        await asyncio.gather(_pull_settings(ls), _watch_python_files(ls))

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    async def on_did_change_workspace_folders(ls: HeedlsServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
        # pygls announces workspace folder support and keeps its own list; the configuration per
        # folder follows it; the first folder left supplies the shared settings. The root (where
        # the services were built) stays the one of initialize.
        removed = set(_folder_paths(params.event.removed))
        added = _only_folders(ls, _folder_paths(params.event.added))
        ls.folders = [f for f in ls.folders if f not in removed] + [f for f in added if f not in ls.folders]
        await ls.reload_config()
        await _pull_settings(ls, window=False)  # the added folders' own settings

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def on_did_change_configuration(ls: HeedlsServer, params: types.DidChangeConfigurationParams) -> None:
        settings = params.settings
        if settings is None or settings == {}:
            await _pull_settings(ls)  # a pull-model client: the change is to be asked for
            return
        ls.client_settings = settings
        ls.settings_asked["window"] += 1  # what is pushed now is newer than any answer still to come
        await ls.reload_config()
        await _pull_settings(ls, window=False)  # each folder's own settings may have changed too


PULL_TIMEOUT_S = 5.0
PARENT_POLL_S = 3.0


async def _watch_parent(pid: int) -> None:
    """LSP: "If the parent process is not alive then the server should exit" (initialize's
    processId). An editor that crashed or was killed leaves its pipes to a server that may never
    read end-of-file (a wrapper holds them): the server and its test runs would stay forever."""
    while pid_alive(pid):
        await asyncio.sleep(PARENT_POLL_S)
    log.warning("the editor (process %d) is gone: exiting", pid)
    from heedls.analyzers.proc import kill_running

    kill_running()
    os.kill(os.getpid(), signal.SIGTERM)  # the normal way out: telemetry flushed, exit status 143


WATCH_REGISTRATION = "heedls-python-files"


async def _watch_python_files(ls: HeedlsServer) -> None:
    """Ask a client that registers file watchers on request (VS Code; Neovim where it can watch)
    to report .py files changed on disk: a git checkout, a formatter run or a new module then
    reaches the local provider's index without a buffer edit. Other clients: the provider looks
    at the disk every 2 minutes itself."""
    capabilities = ls.client_capabilities
    workspace = capabilities.workspace if capabilities is not None else None
    watched = workspace.did_change_watched_files if workspace is not None else None
    if watched is None or not watched.dynamic_registration:
        return
    options = types.DidChangeWatchedFilesRegistrationOptions(watchers=[types.FileSystemWatcher(glob_pattern="**/*.py")])
    registration = types.Registration(id=WATCH_REGISTRATION, method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                                      register_options=options)
    try:
        async with asyncio.timeout(PULL_TIMEOUT_S):  # a client that never answers must not hold us
            await ls.client_register_capability_async(types.RegistrationParams(registrations=[registration]))
    except Exception as exc:  # noqa: BLE001 - without watchers the periodic disk check still refreshes
        log.debug("registering the .py file watcher failed: %s", exc)


async def _however_late(request: asyncio.Future[Any]) -> Any:
    """The client's answer to `request`, when it comes. An editor still starting up may answer
    after PULL_TIMEOUT_S: giving up then (cancelling the request) lost that answer, the folders'
    settings for the session; it is still taken (if its request is still the latest one)."""
    try:
        async with asyncio.timeout(PULL_TIMEOUT_S):
            return await asyncio.shield(request)
    except TimeoutError:
        log.debug("workspace/configuration: no answer after %g s; still waiting for it", PULL_TIMEOUT_S)
    return await request


def _answers_configuration(ls: HeedlsServer) -> bool:
    capabilities = ls.client_capabilities
    workspace = capabilities.workspace if capabilities is not None else None
    return workspace is not None and bool(workspace.configuration)


def _empty(settings: Any) -> bool:
    return settings is None or settings == {} or settings == []


def _cancelling() -> bool:
    """Is the running task itself being cancelled (not just something it awaits)?"""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _pull_settings(ls: HeedlsServer, *, window: bool = True) -> None:
    """Ask a client that answers workspace/configuration (VS Code, Helix, Zed, Sublime LSP, eglot,
    Neovim) for the `heedls` section: the window's (`window`; its answer is the editor's settings,
    as a push would be) and each workspace folder's (scopeUri: VS Code's folder settings), whose
    lint, tests and repair sections apply to that folder's documents. One request for all; the
    configuration is re-read when an answer brings something new."""
    if not _answers_configuration(ls):
        return
    folders = [folder for folder in ls.folders if folder.is_absolute()]
    items = [types.ConfigurationItem(section="heedls")] if window else []
    items += [types.ConfigurationItem(section="heedls", scope_uri=folder.as_uri()) for folder in folders]
    if not items:
        return
    # Requests can be answered out of order (two changes in quick succession): only the answers to
    # the latest request for the window's settings, and for the folders', are taken.
    asked = ls.settings_asked
    if window:
        asked["window"] += 1
    asked["folders"] += 1
    window_seq, folders_seq = asked["window"], asked["folders"]
    # An earlier request still unanswered whose every answer would now be stale is given up: it
    # left pygls' table only with its answer, and a client that never answers held one for
    # every settings change of the session (its late answer is dropped quietly: app.py).
    pending: dict[asyncio.Future[Any], tuple[int | None, int]] = ls.services.setdefault("settings_pulls", {})
    for earlier, (earlier_window, earlier_folders) in list(pending.items()):
        if (earlier_window is None or earlier_window != asked["window"]) and earlier_folders != asked["folders"]:
            del pending[earlier]
            earlier.cancel()
    request = asyncio.ensure_future(ls.workspace_configuration_async(types.ConfigurationParams(items=items)))
    pending[request] = (window_seq if window else None, folders_seq)
    try:
        answer: Any = await _however_late(request)
    except asyncio.CancelledError:
        if not request.cancelled() or _cancelling():
            raise  # the caller is cancelled (shutdown), not just this request
        log.debug("workspace/configuration: superseded by a newer request, unanswered; given up")
        return
    except Exception as exc:  # noqa: BLE001 - no settings from the client is not an error of ours
        log.debug("workspace/configuration failed: %s", exc)
        return
    finally:
        pending.pop(request, None)
    if answer is None:  # JSON-RPC's null result: no settings for any item
        answer = [None] * len(items)
    answers = list(answer) if isinstance(answer, (list, tuple)) else []
    changed = False
    if window and answers:
        settings = answers.pop(0)
        if window_seq != asked["window"]:
            log.debug("workspace/configuration: a stale answer for the window's settings; ignored")
        elif not _empty(settings):
            ls.client_settings = {"heedls": settings}
            changed = True
    if folders_seq != asked["folders"]:
        log.debug("workspace/configuration: a stale answer for the folders' settings; ignored")
    elif len(answers) == len(folders):  # a client that answered the first item only: the window's
        # A folder's answer that is the window's (a client that does not tell scopes apart, or a
        # folder with no settings of its own) adds nothing: only the folders that differ are kept.
        window_settings = config_mod.own_section(ls.client_settings)
        scoped = {config_mod.resolved(folder): settings for folder, settings in zip(folders, answers, strict=True)
                  if not _empty(settings) and settings != window_settings}
        if scoped != ls.folder_settings:
            ls.folder_settings = scoped
            changed = True
    else:
        log.debug("workspace/configuration: %d answers for %d folders; folder settings unchanged",
                  len(answers), len(folders))
    if changed:
        await ls.reload_config()
