"""rolechat.config: defaults < config file < environment < overrides, and ROLECHAT_HOME roots every path."""

from __future__ import annotations

import pytest

from rolechat import settings
from rolechat.llm import LLMConfig


def test_layering_file_then_env_then_overrides(tmp_path, monkeypatch):
    path = tmp_path / "rolechat.toml"
    path.write_text('[llm]\nmodel = "/models/a"\ntemperature = 0.2\nmax_new_tokens = 64\n', encoding="utf-8")
    data = settings.load_file(settings.config_file(path))
    monkeypatch.setenv("ROLECHAT_LLM_TEMPERATURE", "0.5")
    monkeypatch.setenv("ROLECHAT_LLM_PERSONA_DIRS", "/a,/b")
    cfg = settings.build(LLMConfig, "llm", data, {"max_new_tokens": 8, "model": None})
    assert (cfg.model, cfg.temperature, cfg.max_new_tokens, cfg.persona_dirs) == ("/models/a", 0.5, 8, ["/a", "/b"])
    assert settings.build(LLMConfig, "llm", {}).temperature == 0.5
    monkeypatch.delenv("ROLECHAT_LLM_TEMPERATURE")
    assert settings.build(LLMConfig, "llm", {}).temperature == LLMConfig().temperature


def test_home_config_file_is_found_and_typos_are_named(monkeypatch, tmp_path):
    home = settings.home()
    assert settings.config_file() is None
    (home / "rolechat.toml").write_text("[llm]\nmodle = 'x'\n", encoding="utf-8")
    data = settings.load_file(settings.config_file())
    with pytest.raises(settings.ConfigError, match=r"\[llm\] has unknown key 'modle'"):
        settings.build(LLMConfig, "llm", data)


@pytest.mark.parametrize(
    "env, message",
    [
        ("ROLECHAT_LLM_TEMPERATURE=hot", "expected float"),
        ("ROLECHAT_LLM_TRUST_REMOTE_CODE=maybe", "expected true/false"),
    ],
)
def test_bad_environment_values_name_the_variable(monkeypatch, env, message):
    key, value = env.split("=")
    monkeypatch.setenv(key, value)
    with pytest.raises(settings.ConfigError, match=f"{key}: {message}"):
        settings.build(LLMConfig, "llm", {})


def test_invalid_values_are_rejected_with_the_field_name():
    with pytest.raises(ValueError, match="llm.quantization"):
        LLMConfig(quantization="3bit")
    with pytest.raises(ValueError, match="temperature"):
        LLMConfig(temperature=-1)


def test_invalid_toml_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[llm\n", encoding="utf-8")
    with pytest.raises(settings.ConfigError, match="bad.toml: invalid TOML"):
        settings.load_file(bad)
    with pytest.raises(settings.ConfigError, match="config file not found"):
        settings.config_file(tmp_path / "missing.toml")


def test_rolechat_home_roots_every_path(_isolated_home):
    for path in (settings.personas_dir(), settings.kb_dir(), settings.runs_dir(), settings.cache_dir()):
        assert path.is_dir() and path.parent == _isolated_home
