"""`rolechat eval-persona` end to end on the shipped sample persona 喵喵 and the built-in demo model, with the
default embedder (multilingual-e5-small) for the cosine and a judge trained on the default classifier base."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rolechat.cli import app


@pytest.mark.slow
def test_eval_persona_on_the_sample_persona(monkeypatch):
    for key in ("ROLECHAT_LLM_MODEL", "ROLECHAT_CLASSIFY_MODEL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ROLECHAT_CLASSIFY_MAX_STEPS", "6")  # a quick judge: the test is about the plumbing
    monkeypatch.setenv("ROLECHAT_CLASSIFY_MAX_LENGTH", "48")
    args = ["eval-persona", "--persona", "miaomiao", "--max-new-tokens", "40", "--train-judge", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    from rolechat.llm.demo import SAMPLE_PERSONAS_DIR

    shipped = json.loads((SAMPLE_PERSONAS_DIR / "miaomiao" / "persona.json").read_text(encoding="utf-8"))
    assert report["prompts"] == len(shipped["data"]["eval_records"]) and "held-out split of" in report["source"]
    assert report["catchphrase"].endswith("喵~")  # the longest ending most references share ("了喵~" when they do)
    persona, base = report["metrics"]["persona"], report["metrics"]["base"]
    assert 0 < persona["catchphrase"] <= 1 and 0 <= base["catchphrase"] <= 1
    assert report["catchphrase_share"] == persona["catchphrase"]
    # both sides scored by the base model. Since the demo model's cat stage the base model itself speaks as a cat
    # under 喵喵's system prompt, so the two sides are close here; test_demo_model checks that the persona changes
    # the base model's replies.
    assert persona["perplexity"] >= 1 and base["perplexity"] >= 1
    assert report["fluency_ratio"] == pytest.approx(persona["perplexity"] / base["perplexity"])
    assert report["judge"] == "miaomiao-judge" and 0 <= persona["character_score"] <= 1
    for side in (persona, base):
        assert 0 <= side["rouge_l"] <= 1 and 0 < side["distinct_1"] <= 1 and 0 <= side["stopped"] <= 1
    assert "embedding_cosine" not in report["skipped"]  # the default multilingual-e5-small reads Chinese
    assert all(0 < side["embedding_cosine"] <= 1 for side in (persona, base))
    assert report["saved"].startswith("not saved")  # the shipped sample persona stays untouched
    assert len(report["samples"]) == 5 and report["samples"][0]["reference"]
