"""Configuration: defaults ← pyproject ← initializationOptions ← settings; bad values fall back."""

from __future__ import annotations

from pathlib import Path

from heedls.server.config import HeedlsConfig, load, merge


def test_layers_apply_in_order(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.heedls.inline]\ndebounce_ms = 200\nmax_lines = 4\n[tool.heedls.provider]\nname = "ollama"\n')
    config, warnings = load(tmp_path, {"inline": {"debounceMs": 90}}, {"heedls": {"inline": {"maxLines": 2}}})
    assert warnings == []
    assert config.inline.debounce_ms == 90 and config.inline.max_lines == 2 and config.provider.name == "ollama"


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
