"""One typed configuration object, merged from defaults <- pyproject [tool.heedls] <- editor options
(<- the editor's settings for a workspace folder, for its lint, tests and repair sections).

Bad values never crash anything: a bad value sets nothing (the setting keeps what the layers
before gave it: its default, or the project's value under a garbled editor setting) and is reported
as a warning string, naming the setting and the value (never a secret's), that the server forwards
as `window/logMessage` (and the CLI prints to stderr). A setting that
guards the user's code (telemetry `enabled`, `privacy`) falls back to its privacy-safe value
instead (field metadata `"invalid"`): someone who wrote `privacy = "no-code"` meant to keep code out.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import reprlib
import stat
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from heedls.analyzers.testrun import default_memory_limit_gb

ProviderName = Literal["local", "openai", "ollama", "llamacpp"]
GateMode = Literal["off", "stage1", "cascade"]
Privacy = Literal["full", "nocode"]
AcceptLabel = Literal["accepted", "persisted"]


@dataclass(frozen=True)
class ProviderConfig:
    """Where suggestions come from. `local` needs nothing; the HTTP providers need an endpoint."""

    name: ProviderName = "local"
    endpoint: str = ""
    model: str = ""
    # Name of the environment variable holding the key; `api_key` in settings is accepted but
    # discouraged because settings files get shared. Keys are never logged.
    api_key_env: str = "HEEDLS_API_KEY"
    api_key: str = field(default="", metadata={"secret": True})  # its value is never in a warning
    mode: Literal["fim", "chat"] = "fim"
    fim_template: str = "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"
    max_tokens: int = field(default=64, metadata={"min": 1})  # 0: servers refuse it, or answer nothing
    temperature: float = 0.0
    # The whole budget of one suggestion; under 100 ms the endpoint is never given time (the local
    # provider's reserve is 50-250 ms): 0 meant "local only" without a word.
    deadline_ms: int = field(default=1500, metadata={"min": 100})
    # Circuit breaker: after `breaker_failures` consecutive failures, skip the endpoint for
    # `breaker_cooldown_s` seconds (doubling up to 10 minutes) and serve `local` instead.
    breaker_failures: int = 3
    breaker_cooldown_s: float = 30.0

    def resolved_api_key(self) -> str:
        return self.api_key or os.environ.get(self.api_key_env, "")


@dataclass(frozen=True)
class InlineConfig:
    enabled: bool = True
    debounce_ms: int = 120
    # Upper bounds ("max" metadata): larger values are clamped, with a warning, so that one setting
    # cannot make every request (and the gate's features) read megabytes.
    max_prefix_chars: int = field(default=6000, metadata={"max": 100_000})
    max_suffix_chars: int = field(default=2000, metadata={"max": 100_000})
    max_lines: int = field(default=8, metadata={"max": 200})
    cache_entries: int = 512
    disk_cache: bool = True
    disk_cache_mb: int = 64


@dataclass(frozen=True)
class GateConfig:
    mode: GateMode = "cascade"
    keep_accepted: float = 0.95
    label: AcceptLabel = "accepted"
    refit: bool = True
    min_events_for_refit: int = 200


@dataclass(frozen=True)
class TelemetryConfig:
    enabled: bool = field(default=True, metadata={"invalid": False})
    privacy: Privacy = field(default="full", metadata={"invalid": "nocode"})
    path: str = ""  # empty = per-workspace store in the user data directory
    # Past this many MB the store removes its oldest suggestions to make room (0: no cap).
    max_size_mb: float = 0.0
    push_endpoint: str = ""
    reject_timeout_s: float = 5.0
    # Speeds up the persistence clock (30 s / 120 s / 600 s checkpoints); for end-to-end tests.
    persistence_time_scale: float = 1.0


@dataclass(frozen=True)
class TestsConfig:
    enabled: bool = True
    # Tests execute workspace code: nothing runs unless the workspace is trusted. Editors that
    # know about trust (VS Code's Workspace Trust) pass it in initializationOptions; elsewhere the
    # default is to trust the workspace the user opened, as pytest itself does.
    trusted: bool = True
    on_save: bool = True
    timeout_s: float = 60.0
    python: str = ""  # empty = auto-detect .venv/venv, else the interpreter running heedls
    debounce_ms: int = 400
    # Resident memory the test processes may hold together, GiB (0 = no limit): a test that
    # allocates without bound is stopped there and named (analyzers/testrun.py), where it grew
    # until the machine's OOM killer picked a process, maybe the editor.
    memory_limit_gb: float = field(default=default_memory_limit_gb(), metadata={"max": 1 << 20})


@dataclass(frozen=True)
class LintConfig:
    enabled: bool = True
    ruff: str = ""  # empty = ruff from the environment, else the bundled one
    # Syntax diagnostics wait this long after the last change (a newer change reschedules).
    syntax_debounce_ms: int = 120
    lint_debounce_ms: int = 300  # ruff on the buffer after typing pauses (it runs on save as well)
    # An open document larger than this (kB of text; 0 = no limit) gets no syntax or ruff
    # diagnostics: compile() of a 10 MB file peaks at 1 GB (2.9 GB with a syntax error near its
    # end), tree-sitter's tree holds 280 MB more, ruff 300 MB. Measured in docs/diagnostics.md.
    max_file_kb: int = 1024
    # At most this many diagnostics are published per document (0 = no limit), the most likely
    # causes first, and one more says how many are not shown: a file of 44,000 findings (`from x
    # import *` and F405 on every name, a generated module) was a 10 MB notification whose
    # conversion held the event loop for seconds, suggestions included.
    max_diagnostics: int = 1000


@dataclass(frozen=True)
class RepairConfig:
    enabled: bool = True
    budget_s: float = 60.0
    jobs: int = 0  # 0 = number of cores
    use_provider: bool = False


@dataclass(frozen=True)
class HeedlsConfig:
    provider: ProviderConfig = field(default_factory=ProviderConfig)
    inline: InlineConfig = field(default_factory=InlineConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    tests: TestsConfig = field(default_factory=TestsConfig)
    lint: LintConfig = field(default_factory=LintConfig)
    repair: RepairConfig = field(default_factory=RepairConfig)
    log_level: Literal["error", "warning", "info", "debug"] = "warning"

    def redacted(self) -> dict[str, Any]:
        """The config as a dict safe to log: API keys are masked."""
        data = dataclasses.asdict(self)
        if data["provider"].get("api_key"):
            data["provider"]["api_key"] = "***"
        return data


# No setting means anything above this (a timeout or delay in ms or s, a count): larger values
# overflowed the arithmetic of timers (1e300 ms of debounce hung every request, 10**400 raised).
_LARGEST = 10**9


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 40
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 4

# At most this many warnings per layer, then one that says how many more: a file of a million
# unknown keys was a million log messages, each a window/logMessage, on every reload.
MAX_WARNINGS = 20


def _short(value: Any) -> str:
    """`value` for a warning: a bounded repr (a 50 MB string, a list nested 900 deep - whose repr
    overflowed the stack - are shown by their start)."""
    try:
        return _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a warning's text must never be what fails
        return f"a value of type {type(value).__name__}"


def _described(value: Any, secret: bool) -> str:
    return f"a value of type {type(value).__name__}" if secret else _short(value)


def _coerce(value: Any, annotation: Any, where: str, warnings: list[str], default: Any, secret: bool = False) -> Any:
    shown = _described(value, secret)
    origin = get_origin(annotation)
    if origin is Literal:
        allowed = get_args(annotation)
        if isinstance(value, str) and value in allowed:
            return value
        warnings.append(f"{where}: {shown} is not one of {list(allowed)}; using {default!r}")
        return default
    if annotation is bool:
        if isinstance(value, bool):
            return value
        warnings.append(f"{where}: expected true/false, got {shown}; using {default!r}")
        return default
    if annotation is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _LARGEST:
            return value
        warnings.append(f"{where}: expected an integer from 0 to {_LARGEST}, got {shown}; using {default!r}")
        return default
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= _LARGEST:
            return float(value)  # NaN fails the comparison; infinity is above the limit
        warnings.append(f"{where}: expected a number from 0 to {_LARGEST}, got {shown}; using {default!r}")
        return default
    if annotation is str:
        if isinstance(value, str):
            return value
        kept = "***" if secret and default else repr(default)
        warnings.append(f"{where}: expected a string, got {shown}; using {kept}")
        return default
    return value


def _merge_section(current: Any, overrides: Mapping[str, Any], where: str, warnings: list[str]) -> Any:
    """`current` with `overrides` (one layer's table for it) applied. A bad value sets nothing: the
    setting keeps what the layers before gave it (the default, the project's value), or its
    privacy-safe value (field metadata "invalid"); one bad key never costs the table's good ones."""
    hints = get_type_hints(type(current))
    changes: dict[str, Any] = {}
    given: dict[str, str] = {}  # field -> the key that set it in this table (snake, kebab or camel case)
    known = {f.name: f for f in fields(current)}
    for raw_key, value in overrides.items():
        if not isinstance(raw_key, str):
            warnings.append(f"{where}.{_short(raw_key)}: a setting's name must be a string; ignored")
            continue
        key = _normal(raw_key)
        name = f"{where}.{_short(raw_key)[1:-1] if len(raw_key) > 40 else raw_key}"
        if key not in known:
            # a hint for the few warnings shown (a file of a million unknown keys is not searched)
            close = (difflib.get_close_matches(key.lstrip("_"), list(known), n=1)
                     if len(key) <= 100 and len(warnings) < MAX_WARNINGS else [])
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            warnings.append(f"{name}: unknown setting{hint}, ignored")
            continue
        if key in given:
            warnings.append(f"{name}: {key!r} is given twice in one table (as {given[key]!r} and {raw_key!r}); "
                            f"the last one counts")
        given[key] = raw_key
        annotation = hints[key]
        sub_default = getattr(current, key)
        if dataclasses.is_dataclass(sub_default):
            if isinstance(value, Mapping):
                changes[key] = _merge_section(sub_default, value, name, warnings)
            elif key == "provider" and isinstance(value, str):
                # shorthand: provider = "ollama"
                changes[key] = _merge_section(sub_default, {"name": value}, name, warnings)
            elif value is None or value == []:  # null: not set; Neovim's empty table {} is []
                changes.pop(key, None)
            else:
                warnings.append(f"{name}: expected a table, got {_short(value)}; ignored")
            continue
        if value is None:
            changes.pop(key, None)
            continue
        meta = known[key].metadata
        fallback = meta.get("invalid", getattr(current, key))
        value = _coerce(value, annotation, name, warnings, fallback, bool(meta.get("secret")))
        top, bottom = meta.get("max"), meta.get("min")
        if top is not None and value > top:
            warnings.append(f"{name}: {value!r} is above the limit {top}; using {top}")
            value = top
        if bottom is not None and value < bottom:
            warnings.append(f"{name}: {value!r} is below the least value {bottom}; using {fallback!r}")
            value = fallback
        changes[key] = value
    if isinstance(current, GateConfig):
        keep = changes.get("keep_accepted", current.keep_accepted)
        if not 0.5 <= keep <= 1.0:
            before = current.keep_accepted if 0.5 <= current.keep_accepted <= 1.0 else GateConfig.keep_accepted
            warnings.append(f"{where}.keepAccepted: {keep!r} must be between 0.5 and 1.0; using {before!r}")
            changes["keep_accepted"] = before
    if isinstance(current, ProviderConfig):
        _check_temperature(current, changes, where, warnings)
    return replace(current, **changes)


# The largest `temperature` each provider's API takes. The OpenAI API (and servers following it to
# the letter, Azure OpenAI) refuses more than 2 with HTTP 400 on every request, which served `local`
# behind a breaker warning that only said "HTTP 400". Ollama's and llama.cpp's own APIs set no upper
# bound (their samplers take any non-negative value).
MAX_TEMPERATURE: dict[str, float] = {"openai": 2.0}


def _check_temperature(current: ProviderConfig, changes: dict[str, Any], where: str, warnings: list[str]) -> None:
    """A temperature the provider chosen (in this layer or an earlier one) refuses sets nothing: the
    earlier layer's value is kept when that one is in range, else the default."""
    name = changes.get("name", current.name)
    top = MAX_TEMPERATURE.get(name)
    value = changes.get("temperature", current.temperature)
    if top is None or value <= top:
        return
    before = current.temperature if current.temperature <= top else ProviderConfig.temperature
    if "temperature" in changes:
        warnings.append(f"{where}.temperature: {value!r} is above {top:g}, the most the {name} API accepts (it "
                        f"would refuse every request); using {before!r}")
    else:  # this layer chose the provider; the temperature came from a layer before
        warnings.append(f"{where}.name: the {name} API accepts a temperature of at most {top:g}, not the "
                        f"{value!r} set before (it would refuse every request); using {before!r}")
    changes["temperature"] = before


def merge(base: HeedlsConfig, overrides: Any, source: str) -> tuple[HeedlsConfig, list[str]]:
    """Apply one layer of overrides; returns the new config and human-readable warnings (at most
    MAX_WARNINGS, then one that counts the others)."""
    warnings: list[str] = []
    overrides = own_section(overrides)
    if overrides is None or overrides == []:  # Neovim encodes an empty table {} as []
        return base, warnings
    if not isinstance(overrides, Mapping):
        return base, [f"{source}: expected an object of settings, got {type(overrides).__name__}; ignored"]
    merged = _merge_section(base, overrides, source, warnings)
    if len(warnings) > MAX_WARNINGS:
        more = len(warnings) - MAX_WARNINGS
        warnings[MAX_WARNINGS:] = [f"{source}: {more} more problem{'s' * (more != 1)} like these, not listed"]
    return merged, warnings


def own_section(settings: Any) -> Any:
    """heedls' own part of an editor's settings. VS Code sends {"heedls": {...}} from
    workspace/configuration sections; a client that pushes one table for all its servers (eglot, a
    shared vim.lsp.config('*')) has other sections beside it. Anything else is taken as it is."""
    if isinstance(settings, Mapping) and "heedls" in settings:
        # whatever it is: `"heedls": 5` is a bad settings object (and said to be one), not an
        # unknown setting named "heedls", and no push that drops initializationOptions' settings
        return settings["heedls"]
    return settings


# A pyproject.toml larger than this is not read (a warning says so): it is parsed again on every
# settings change, on the event loop, and 26 MB of small keys took tomllib 9 s.
MAX_PYPROJECT_BYTES = 2 * 1024 * 1024


def read_pyproject(root: Path) -> tuple[dict[str, Any], list[str]]:
    path = root / "pyproject.toml"
    try:
        info = path.stat()
    except (OSError, ValueError):  # none there (or a dangling link, a symlink loop): no project settings
        return {}, []
    if not stat.S_ISREG(info.st_mode):  # a directory, a FIFO (opening one would wait for a writer)
        return {}, [f"{path}: not a regular file; [tool.heedls] not read, using defaults"]
    if info.st_size > MAX_PYPROJECT_BYTES:
        return {}, [f"{path}: {info.st_size / 1024 / 1024:.1f} MB is too large to be a project file (the limit is "
                    f"{MAX_PYPROJECT_BYTES // 1024 // 1024} MB); [tool.heedls] not read, using defaults"]
    warnings: list[str] = []
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_PYPROJECT_BYTES + 1)
        if len(raw) > MAX_PYPROJECT_BYTES:  # it grew since stat
            return {}, [f"{path}: too large to be a project file; [tool.heedls] not read, using defaults"]
        try:  # utf-8-sig: a byte-order mark (some Windows editors write one) is no TOML error
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            warnings.append(f"{path}: not UTF-8 (byte 0x{raw[exc.start]:02x} on line {line}); read with "
                            f"replacement characters")
            text = raw.decode("utf-8-sig", errors="replace")
        data = tomllib.loads(text)
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        return {}, [f"{path}: cannot read [tool.heedls] ({exc}); using defaults"]
    except RecursionError:  # values nested thousands deep
        return {}, [f"{path}: cannot read [tool.heedls] (values nested too deep); using defaults"]
    tool = data.get("tool", {})
    section = tool.get("heedls", {}) if isinstance(tool, dict) else None
    if not isinstance(section, dict):
        return {}, [*warnings, f"{path}: [tool.heedls] must be a table; using defaults"]
    return section, warnings


def load(
    root: Path | None,
    init_options: Any = None,
    client_settings: Any = None,
    *,
    folder_settings: Any = None,
    project_label: str = "pyproject.toml [tool.heedls]",
    project: tuple[dict[str, Any], list[str]] | None = None,
) -> tuple[HeedlsConfig, list[str]]:
    """defaults <- pyproject.toml [tool.heedls] <- initializationOptions <- didChangeConfiguration
    (or the window's answer to workspace/configuration) <- `folder_settings`: the editor's settings
    for this folder (workspace/configuration with the folder as scopeUri, VS Code's folder-scoped
    settings), of which only the PROJECT_SECTIONS count. `project_label` names the project file's
    layer in warnings (which folder's, in a multi-root workspace); `project`: `read_pyproject(root)`
    when the caller has it already."""
    section: dict[str, Any] = {}
    warnings: list[str] = []
    if project is not None:
        section, warnings = project[0], list(project[1])
    elif root is not None:
        section, warnings = read_pyproject(root)
    if _pushed(client_settings):
        # What the editor pushes is its settings now, whole (VS Code's extension and Neovim's plugin
        # send the same object at start-up and on every change): a setting removed since start-up
        # is gone, not kept from initializationOptions. An empty push (Neovim's default) is none.
        init_options = None
    folder_layer, folder_label = None, "settings"
    if folder_settings is not None:
        window, _ = _layered({}, init_options, client_settings)
        folder_layer = _folder_layer(folder_settings, window.tests.trusted)
        folder_label = f"settings [folder {root}]" if root is not None else "settings [folder]"
    config, more = _layered(section, init_options, client_settings, project_label, folder_layer, folder_label)
    if not config.tests.trusted:
        # The repository's own file may not make heedls run a program (ruff, an interpreter),
        # send its code and a secret elsewhere (provider), or declare itself trusted.
        section, ignored = _without_untrusted(section)
        if ignored:
            config, more = _layered(section, init_options, client_settings, project_label, folder_layer, folder_label)
            more.append(f"{project_label}: {', '.join(ignored)} ignored: the workspace is not trusted")
    return config, warnings + more


def _folder_layer(settings: Any, trusted: bool) -> dict[str, Any] | None:
    """The part of a folder's editor settings that may differ from folder to folder: the
    PROJECT_SECTIONS (the others belong to the shared services, set for the window). Where the
    window's settings say the workspace is untrusted, a folder's cannot say otherwise."""
    settings = own_section(settings)
    if not isinstance(settings, Mapping):
        return None
    layer: dict[str, Any] = {}
    for key, value in settings.items():
        name = _normal(key)
        if name not in PROJECT_SECTIONS:
            continue
        if name == "tests" and not trusted and isinstance(value, Mapping):
            value = {k: v for k, v in value.items() if _normal(k) != "trusted"}
        layer[key] = value
    return layer or None


# The sections a workspace folder's own pyproject.toml decides for the documents in it: how its code
# is linted, tested and repaired. The others (provider, inline, gate, telemetry, log level) belong
# to the server's shared services (one engine, one gate): the first folder's.
PROJECT_SECTIONS = ("lint", "tests", "repair")
# Except where a folder's suggestion events are kept: each folder has its own event store, the one
# `heedls telemetry …` run in that folder reads, so these settings of its telemetry section are the
# folder's own too (pyproject.toml <- the editor's window settings; the other telemetry settings,
# timings, are the shared services').
FOLDER_STORE_SETTINGS = ("enabled", "privacy", "path", "max_size_mb")


def load_folders(
    folders: list[Path],
    init_options: Any = None,
    client_settings: Any = None,
    folder_settings: Mapping[Path, Any] | None = None,
) -> tuple[HeedlsConfig, dict[Path, HeedlsConfig], list[str]]:
    """The configuration of a multi-root workspace: the server's (the first folder's, as `load`),
    and for each folder, keyed by its resolved path, that one with the PROJECT_SECTIONS read from
    the folder's own pyproject.toml, the editor's settings and then the editor's settings for that
    folder (`folder_settings`, keyed by resolved path) on top; its telemetry's
    FOLDER_STORE_SETTINGS (where its events are kept) are also the folder's own. The server's
    config has the first folder's PROJECT_SECTIONS (a document in no folder is treated as the first
    folder's); its other sections never depend on a folder's editor settings."""
    first = folders[0] if folders else None
    first_project = read_pyproject(first) if first is not None else None  # read once, used twice below
    config, warnings = load(first, init_options, client_settings, project=first_project)
    per_folder: dict[Path, HeedlsConfig] = {}
    for folder in folders:
        key = resolved(folder)
        if key in per_folder:
            continue
        scoped = (folder_settings or {}).get(key)
        own = config
        if folder != first or scoped is not None:
            label = "pyproject.toml [tool.heedls]" if folder == first else f"{folder / 'pyproject.toml'} [tool.heedls]"
            own, more = load(folder, init_options, client_settings, folder_settings=scoped, project_label=label,
                             project=first_project if folder == first else None)
            warnings += [w for w in more if w not in warnings]  # the editor's layers warn once
        store = {k: getattr(own.telemetry, k) for k in FOLDER_STORE_SETTINGS}
        per_folder[key] = replace(config, **{k: getattr(own, k) for k in PROJECT_SECTIONS},
                                  telemetry=replace(config.telemetry, **store))
    if first is not None:
        config = per_folder[resolved(first)]
    return config, per_folder, warnings


def resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: the path as given
        return path.absolute()


def folder_of(path: Path, folders: Collection[Path]) -> Path | None:
    """The folder among `folders` (resolved paths) that contains `path` (resolved): the longest,
    for folders nested in one another."""
    best: Path | None = None
    for folder in folders:
        if path.is_relative_to(folder) and (best is None or len(folder.parts) > len(best.parts)):
            best = folder
    return best


def _pushed(settings: Any) -> bool:
    section = own_section(settings)
    return isinstance(section, Mapping) and bool(section)


# Settings of the repository's pyproject.toml that an untrusted workspace does not get to choose.
# A section given as None: all of it.
_UNTRUSTED_KEYS: dict[str, tuple[str, ...] | None] = {
    "provider": None, "lint": ("ruff",), "tests": ("python", "trusted"), "repair": ("use_provider",),
    "telemetry": ("path",)}  # where the user's code snippets are kept


def _normal(key: str) -> str:
    """A setting's field name: editors send camelCase (VS Code settings), TOML uses snake/kebab case."""
    key = key.replace("-", "_")
    return "".join("_" + c.lower() if c.isupper() else c for c in key)


def _without_untrusted(section: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    kept: dict[str, Any] = {}
    ignored: list[str] = []
    for key, value in section.items():
        name = _normal(key)
        if name not in _UNTRUSTED_KEYS:
            kept[key] = value
            continue
        keys = _UNTRUSTED_KEYS[name]
        if keys is None or not isinstance(value, Mapping):
            ignored.append(name)
        else:
            kept[key] = {k: v for k, v in value.items() if _normal(k) not in keys}
            ignored += [f"{name}.{_normal(k)}" for k in value if _normal(k) in keys]
    return kept, ignored


def _layered(section: dict[str, Any], init_options: Any, client_settings: Any,
             project_label: str = "pyproject.toml [tool.heedls]", folder_layer: Any = None,
             folder_label: str = "settings [folder]") -> tuple[HeedlsConfig, list[str]]:
    config = HeedlsConfig()
    warnings: list[str] = []
    for layer, name in ((section or None, project_label), (init_options, "initializationOptions"),
                        (client_settings, "settings"), (folder_layer, folder_label)):
        config, w = merge(config, layer, name)
        warnings += w
    return config, warnings
