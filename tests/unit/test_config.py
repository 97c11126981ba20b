"""Configuration: defaults ← pyproject ← initializationOptions ← settings; bad values fall back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from heedls.server.config import HeedlsConfig, folder_of, load, load_folders, merge


def test_layers_apply_in_order(tmp_path: Path) -> None:
    """defaults <- pyproject.toml <- the editor's settings: at start-up its initializationOptions,
    then each settings object it pushes (which stands for all of its settings)."""
    (tmp_path / "pyproject.toml").write_text('[tool.heedls.inline]\ndebounce_ms = 200\nmax_lines = 4\n[tool.heedls.provider]\nname = "ollama"\n')
    config, warnings = load(tmp_path, {"inline": {"debounceMs": 90}})
    assert warnings == []
    assert config.inline.debounce_ms == 90 and config.inline.max_lines == 4 and config.provider.name == "ollama"
    config, warnings = load(tmp_path, {"inline": {"debounceMs": 90}}, {"heedls": {"inline": {"maxLines": 2}}})
    assert warnings == []
    assert config.inline.debounce_ms == 200 and config.inline.max_lines == 2 and config.provider.name == "ollama"


def test_bad_values_fall_back_to_defaults_with_warnings() -> None:
    config, warnings = merge(HeedlsConfig(), {"inline": {"debounceMs": "fast", "maxLines": -1}, "gate": {"mode": "sometimes", "keepAccepted": 3}, "nope": 1}, "initializationOptions")
    assert config.inline.debounce_ms == 120 and config.inline.max_lines == 8
    assert config.gate.mode == "cascade" and config.gate.keep_accepted == 0.95
    assert len(warnings) == 5 and any("nope" in w for w in warnings)


def test_a_non_object_is_ignored_with_a_warning() -> None:
    config, warnings = merge(HeedlsConfig(), ["not", "an", "object"], "settings")
    assert config == HeedlsConfig() and len(warnings) == 1


def test_broken_pyproject_is_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.heedls\nbroken")
    config, warnings = load(tmp_path)
    assert config == HeedlsConfig() and "pyproject.toml" in warnings[0]


def test_provider_shorthand_and_redacted_key() -> None:
    config, _ = merge(HeedlsConfig(), {"provider": "openai"}, "x")
    assert config.provider.name == "openai"
    config, _ = merge(config, {"provider": {"apiKey": "sk-secret"}}, "x")
    assert "sk-secret" not in repr(config.redacted())


def test_a_mistyped_telemetry_privacy_or_switch_falls_back_to_the_privacy_safe_value() -> None:
    # Someone who wrote "no-code" or enabled = "false" meant to keep code out: not the defaults.
    config, warnings = merge(HeedlsConfig(), {"telemetry": {"privacy": "no-code", "enabled": "false"}}, "pyproject")
    assert config.telemetry.privacy == "nocode"
    assert config.telemetry.enabled is False
    assert any("'no-code'" in w and "'nocode'" in w for w in warnings)
    # valid values are taken as written
    config, warnings = merge(HeedlsConfig(), {"telemetry": {"privacy": "full", "enabled": True}}, "pyproject")
    assert (config.telemetry.privacy, config.telemetry.enabled, warnings) == ("full", True, [])


def test_sizes_above_their_limit_are_clamped_with_a_warning() -> None:
    config, warnings = merge(HeedlsConfig(), {"inline": {"maxPrefixChars": 10_000_000, "maxLines": 50}}, "settings")
    assert config.inline.max_prefix_chars == 100_000 and config.inline.max_lines == 50
    assert len(warnings) == 1 and "10000000" in warnings[0] and "100000" in warnings[0]


def test_an_untrusted_workspaces_pyproject_cannot_run_programs_send_code_or_trust_itself(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.heedls]\nprovider = { name = "openai", endpoint = "http://evil.example", apiKeyEnv = "AWS_SECRET" }\n'
        '[tool.heedls.lint]\nruff = "tools/ruff"\n[tool.heedls.tests]\npython = "tools/python"\ntrusted = true\n'
        'timeout-s = 5\n[tool.heedls.gate]\nmode = "off"\n')
    config, warnings = load(tmp_path, {"tests": {"trusted": False}})
    assert config.provider.name == "local" and config.provider.endpoint == "" and config.provider.api_key_env == "HEEDLS_API_KEY"
    assert config.lint.ruff == "" and config.tests.python == "" and config.tests.trusted is False
    assert config.tests.timeout_s == 5 and config.gate.mode == "off"  # the rest of the file still applies
    assert any("provider, lint.ruff, tests.python, tests.trusted ignored: the workspace is not trusted" in w
               for w in warnings), warnings
    trusted, _ = load(tmp_path, {"tests": {"trusted": True}})
    assert trusted.provider.endpoint == "http://evil.example" and trusted.lint.ruff == "tools/ruff"


def test_a_pyproject_whose_tool_is_not_a_table_or_that_starts_with_a_bom(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('tool = "oops"\n')
    config, warnings = load(tmp_path)
    assert config == HeedlsConfig() and any("must be a table" in w for w in warnings)
    (tmp_path / "pyproject.toml").write_bytes(b'\xef\xbb\xbf[tool.heedls.gate]\nmode = "off"\n')
    config, warnings = load(tmp_path)
    assert config.gate.mode == "off" and warnings == []


def test_the_heedls_section_is_found_beside_other_servers_sections_and_an_empty_list_is_nothing() -> None:
    config, warnings = merge(HeedlsConfig(), {"heedls": {"gate": {"mode": "off"}}, "python": {}}, "settings")
    assert config.gate.mode == "off" and warnings == []
    assert merge(HeedlsConfig(), [], "initializationOptions") == (HeedlsConfig(), [])  # Neovim's {} is []
    assert merge(HeedlsConfig(), {"heedls": []}, "settings") == (HeedlsConfig(), [])


def test_numbers_beyond_any_setting_fall_back_with_a_warning() -> None:
    config, warnings = merge(HeedlsConfig(), {"inline": {"debounceMs": 10**400}, "tests": {"timeoutS": float("inf")},
                                              "provider": {"deadlineMs": 1e300}}, "settings")
    assert (config.inline.debounce_ms, config.tests.timeout_s) == (HeedlsConfig().inline.debounce_ms, 60.0)
    assert config.provider.deadline_ms == HeedlsConfig().provider.deadline_ms and len(warnings) == 3


def test_a_setting_removed_in_the_editor_is_gone_and_an_empty_push_changes_nothing() -> None:
    start = {"gate": {"mode": "off"}, "provider": {"name": "ollama", "endpoint": "http://127.0.0.1:11434"}}
    config, _ = load(None, start, {"heedls": {"tests": {"trusted": True}}})  # both removed since start-up
    assert config.gate.mode == HeedlsConfig().gate.mode and config.provider.name == "local"
    config, _ = load(None, start, {"heedls": []})  # Neovim's default settings: {} sent as []
    assert config.gate.mode == "off" and config.provider.name == "ollama"


def test_each_workspace_folder_has_its_own_lint_tests_and_repair_settings(tmp_path: Path) -> None:
    """A multi-root workspace: a document is linted, tested and repaired as its own folder's
    pyproject.toml says (the innermost folder holding it); what the server shares (provider,
    inline, gate, telemetry) is the first folder's, and the editor's settings override both."""
    first, second = tmp_path / "app", tmp_path / "lib"
    nested = first / "vendored"
    for folder in (first, second, nested):
        folder.mkdir()
    (first / "pyproject.toml").write_text('[tool.heedls]\nprovider = "ollama"\n[tool.heedls.tests]\ntimeoutS = 5\n')
    (second / "pyproject.toml").write_text(
        '[tool.heedls]\nprovider = "openai"\n[tool.heedls.tests]\ntimeoutS = 9\npython = "py3"\n'
        '[tool.heedls.lint]\nenabled = false\nmaxFileKb = 7\n[tool.heedls.repair]\nbudgetS = 3\n[tool.heedls.oops]\n')
    (nested / "pyproject.toml").write_text('[tool.heedls.tests]\ntimeoutS = 11\n')

    config, folders, warnings = load_folders([first, second, nested], {"repair": {"jobs": 2}})
    assert config.provider.name == "ollama" and config.tests.timeout_s == 5 and config.lint.enabled
    assert folders[first.resolve()] == config
    lib = folders[second.resolve()]
    assert (lib.tests.timeout_s, lib.tests.python, lib.lint.enabled, lib.lint.max_file_kb) == (9, "py3", False, 7)
    assert (lib.repair.budget_s, lib.repair.jobs) == (3, 2)  # the editor's layer still applies
    assert lib.provider.name == "ollama" and lib.inline == config.inline  # shared: the first folder's
    assert [w for w in warnings if "oops" in w] == [f"{second / 'pyproject.toml'} [tool.heedls].oops: unknown setting, ignored"]

    roots = list(folders)
    assert folder_of((nested / "m.py").resolve(), roots) == nested.resolve()  # the innermost folder
    assert folder_of((first / "m.py").resolve(), roots) == first.resolve()
    assert folder_of((tmp_path / "elsewhere.py").resolve(), roots) is None
    assert load_folders([], None, {"heedls": {"lint": {"enabled": False}}})[:2] == (
        load(None, None, {"heedls": {"lint": {"enabled": False}}})[0], {})


def test_a_folders_own_editor_settings_come_last_and_only_for_lint_tests_and_repair(tmp_path: Path) -> None:
    """Each layer overrides the ones before it: defaults <- the folder's pyproject.toml <-
    initializationOptions <- the window's editor settings <- the editor's settings for that folder
    (workspace/configuration with its scopeUri). A folder's settings cannot change what the shared
    services use, nor trust a workspace the window's settings say is untrusted."""
    first, second = tmp_path / "app", tmp_path / "lib"
    for folder in (first, second):
        folder.mkdir()
        (folder / "pyproject.toml").write_text('[tool.heedls.repair]\nenabled = true\nbudgetS = 5\n')
    window = {"heedls": {"repair": {"budgetS": 7}, "gate": {"mode": "stage1"}}}
    scoped = {second.resolve(): {"repair": {"enabled": False}, "gate": {"mode": "off"}, "lint": {"enabled": False}},
              first.resolve(): {"tests": {"timeoutS": 3}}}
    config, folders, warnings = load_folders([first, second], {"repair": {"jobs": 2}}, window, scoped)
    lib = folders[second.resolve()]
    assert (lib.repair.enabled, lib.repair.budget_s, lib.lint.enabled) == (False, 7, False)
    assert lib.repair.jobs == HeedlsConfig().repair.jobs  # a push replaces initializationOptions whole
    assert lib.gate.mode == config.gate.mode == "stage1"  # the window's: gate is shared
    assert folders[first.resolve()] == config and config.tests.timeout_s == 3  # documents in no folder too
    assert config.repair.enabled and config.lint.enabled and warnings == []

    untrusted = {"heedls": {"tests": {"trusted": False}}}
    claims = {second.resolve(): {"tests": {"trusted": True, "timeoutS": 4}}}
    _, folders, _ = load_folders([first, second], None, untrusted, claims)
    assert (folders[second.resolve()].tests.trusted, folders[second.resolve()].tests.timeout_s) == (False, 4)


def test_each_folders_pyproject_toml_is_read_once_per_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first folder's file is both the server's layer and, with editor settings of its own, its
    folder's: one reading serves both (a file saved in between cannot give them different values)."""
    import heedls.server.config as config_mod

    first, second = tmp_path / "app", tmp_path / "lib"
    for folder in (first, second):
        folder.mkdir()
        (folder / "pyproject.toml").write_text('[tool.heedls.repair]\nbudgetS = 5\n')
    reads: list[Path] = []
    real = config_mod.read_pyproject
    monkeypatch.setattr(config_mod, "read_pyproject", lambda root: reads.append(root) or real(root))
    scoped = {first.resolve(): {"tests": {"timeoutS": 3}}, second.resolve(): {"tests": {"timeoutS": 4}}}
    config, folders, _ = load_folders([first, second], None, None, scoped)
    assert sorted(reads) == sorted([first, second])
    assert (config.repair.budget_s, config.tests.timeout_s) == (5, 3)
    assert folders[second.resolve()].tests.timeout_s == 4


def test_a_bad_value_in_a_folders_editor_settings_is_named_with_its_folder(tmp_path: Path) -> None:
    first, second = tmp_path / "app", tmp_path / "lib"
    for folder in (first, second):
        folder.mkdir()
    _, folders, warnings = load_folders([first, second], None, None, {second.resolve(): {"tests": {"timeoutS": "soon"}}})
    assert folders[second.resolve()].tests.timeout_s == HeedlsConfig().tests.timeout_s
    assert warnings == [f"settings [folder {second}].tests.timeoutS: expected a number from 0 to 1000000000, "
                        f"got 'soon'; using 60.0"]


def test_where_a_folders_events_are_kept_is_the_folders_own_telemetry_setting(tmp_path: Path) -> None:
    """Each workspace folder keeps its suggestion events in its own store, the one `heedls
    telemetry …` resolves in that folder: its `enabled`, `privacy` and `path` come from its own
    pyproject.toml (under the editor's settings); the telemetry timings stay the window's."""
    first, second = tmp_path / "app", tmp_path / "lib"
    for folder in (first, second):
        folder.mkdir()
    (first / "pyproject.toml").write_text('[tool.heedls.telemetry]\nrejectTimeoutS = 2\n')
    (second / "pyproject.toml").write_text(
        '[tool.heedls.telemetry]\nprivacy = "nocode"\npath = "events.db"\nrejectTimeoutS = 9\n')
    config, folders, _ = load_folders([first, second])
    lib = folders[second.resolve()].telemetry
    assert (lib.privacy, lib.path, lib.enabled) == ("nocode", "events.db", True)
    assert lib.reject_timeout_s == config.telemetry.reject_timeout_s == 2  # the window's
    assert (config.telemetry.privacy, config.telemetry.path) == ("full", "")
    assert lib == dataclasses.replace(config.telemetry, privacy="nocode", path="events.db")

    _, folders, _ = load_folders([first, second], None, {"heedls": {"telemetry": {"enabled": False}}})
    assert not folders[second.resolve()].telemetry.enabled  # the editor's settings still come last


def test_the_readme_configuration_block_states_the_defaults() -> None:
    """README's `[tool.heedls]` example is what a new user copies: every key in it exists, with the
    default it has in config.py (a key added or changed in one place and not the other fails)."""
    import re
    import tomllib

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(\[tool\.heedls\].*?)```", readme, re.S)
    assert block is not None
    settings = tomllib.loads(block.group(1))["tool"]["heedls"]
    config, warnings = merge(HeedlsConfig(), settings, "README.md")
    assert warnings == []
    assert config == HeedlsConfig()
    assert sum(isinstance(v, dict) for v in settings.values()) == 7  # every section is shown
