"""Every config field has a command-line flag, generated from its dataclass; the training page builds its
command from the same table; flags beat the environment, which beats the config file."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import typer

from rolechat import settings
from rolechat.cli import app
from rolechat.cli.options import SECTIONS, flag_table, section_class

ROOT = Path(__file__).resolve().parents[1]


def commands() -> dict[str, typer.core.TyperCommand]:
    """Every leaf command of `rolechat`, by its full name ("kb list", "train", ...)."""
    root = typer.main.get_command(app)
    out = {}

    def walk(group, prefix):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                walk(cmd, f"{prefix}{name} ")
            else:
                out[f"{prefix}{name}"] = cmd

    walk(root, "")
    return out


def option_names(cmd) -> set[str]:
    return {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_config_field_has_a_flag_on_some_command(section):
    cls = section_class(section)
    fields = [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
    exposed = {p.name for cmd in commands().values() for p in cmd.params}
    missing = [f for f in fields if f"{section}__{f}" not in exposed]
    assert missing == [], f"[{section}] fields without a flag: {missing}"


def test_each_command_exposes_every_field_of_its_sections():
    for name, cmd in commands().items():
        sections = getattr(cmd.callback, "config_sections", ())
        names = {p.name for p in cmd.params}
        for section in sections:
            for f in dataclasses.fields(section_class(section)):
                assert f"{section}__{f.name}" in names, f"rolechat {name}: no flag for {section}.{f.name}"


def test_the_commands_that_need_settings_declare_their_sections():
    declared = {name: set(getattr(cmd.callback, "config_sections", ())) for name, cmd in commands().items()}
    assert declared["train"] >= {"train", "llm"}
    assert declared["serve"] >= {"server", "llm", "rag"}
    assert declared["ask"] >= {"llm", "rag"}
    assert declared["chat"] >= {"llm"} and declared["index"] >= {"rag"} and declared["merge"] >= {"llm"}


def test_flags_keep_their_familiar_spellings_and_clashes_get_a_section_prefix():
    train = option_names(commands()["train"])
    assert {"--learning-rate", "--lr", "--weight-decay", "--save-total-limit", "--dedupe", "--no-dedupe"} <= train
    assert {"--num-workers", "--model", "--base", "--packing", "--no-packing", "--target-modules"} <= train
    search = option_names(commands()["search"])
    assert {"--k", "-k", "--mode", "--chroma-url"} <= search
    # eval-retrieval's own -k ("also report hit@k") keeps its meaning; rag.k moves aside
    rows = {spec.field: decls for _, spec, decls in flag_table(["rag"], taken={"-k"})}
    assert rows["k"] == ["--rag-k"]


def _parse(command: str, args: list[str]) -> dict:
    cmd = commands()[command]
    ctx = cmd.make_context(command, args)
    overrides: dict = {}
    for _, spec, _ in flag_table(cmd.callback.config_sections):
        value = spec.parse(ctx.params.get(f"{spec.section}__{spec.field}"))
        if value is not None:
            overrides.setdefault(spec.section, {})[spec.field] = value
    return overrides


def _non_default(spec: settings.Flag):
    if spec.kind is bool:
        return not spec.default
    if spec.kind is int:
        return spec.default + 3
    if spec.kind is float:
        return spec.default + 0.25 if spec.default < 0.2 else spec.default / 2
    if spec.kind is list:
        return ["q_proj", "v_proj"]
    return {"schedule": "linear", "precision": "fp32", "report_to": "tensorboard"}.get(spec.field, "x")


def test_the_training_page_builds_its_command_from_the_same_table():
    sys.path.insert(0, str(ROOT))
    from rolechat.finetune.config import TrainConfig
    from ui.train import train_args

    values = {spec.field: _non_default(spec) for spec in settings.flags(TrainConfig, "train")}
    values["early_stopping"] = 0  # needs eval_steps; 0 keeps the combination valid
    values["cpu_processes"] = 1  # must divide batch_size
    TrainConfig(**values)  # the values are valid settings
    args = train_args(values)
    parsed = _parse("train", ["--persona", "p", *args])
    assert parsed["train"] == {k: v for k, v in values.items() if v != 0 or k != "early_stopping"} | (
        {"early_stopping": 0}
    )
    assert train_args({"learning_rate": None, "packing": False}) == ["--no-packing"]


def test_flags_beat_the_environment_which_beats_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("ROLECHAT_RAG_K", "7")
    data = {"rag": {"k": 9, "mode": "bm25"}, "__file__": "cfg.toml"}
    overrides = _parse("search", ["q", "--kb", "x", "-k", "3"])["rag"]
    cfg = settings.build(section_class("rag"), "rag", data, overrides)
    assert (cfg.k, cfg.mode) == (3, "bm25")
    assert settings.build(section_class("rag"), "rag", data, {}).k == 7


def test_a_bad_flag_value_names_the_setting(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    monkeypatch.setenv("ROLECHAT_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["kb", "list", "--chroma-url", "ftp://nowhere"])
    assert result.exit_code == 1
    assert "rag.chroma_url must start with http" in result.output


def test_app_flags_after_the_double_dash_come_from_the_app_config_table():
    sys.path.insert(0, str(ROOT))
    from ui.config import AppConfig, app_flags

    assert app_flags(["--sample-kb-name", "样例", "--no-sample-kb"]) == {"sample_kb_name": "样例", "sample_kb": False}
    fields = {f.name for f in dataclasses.fields(AppConfig)}
    assert {spec.field for spec in settings.flags(AppConfig, "app")} == fields
    with pytest.raises(settings.ConfigError, match="unknown --nope"):
        app_flags(["--nope"])
