"""eval-persona's measures on hand-made inputs, and the held-out prompts found again from a manifest."""

from __future__ import annotations

import json

import pytest

from rolechat.finetune.persona_eval import (
    EvalError,
    breaks_character,
    detect_catchphrase,
    distinct_n,
    held_out_items,
    rouge_l,
    tokens,
)
from rolechat.llm.personas import PersonaManifest


def test_rouge_l_on_jieba_tokens():
    assert tokens("我喜欢晒太阳，喵~") == ["我", "喜欢", "晒太阳", "喵"]
    assert rouge_l("我喜欢晒太阳", "我喜欢晒太阳") == pytest.approx(1.0)
    # candidate 我/喜欢/吃鱼 vs reference 我/也/喜欢/吃/鱼? use an unambiguous pair: LCS 2 of 3 and 4 tokens
    c, r = tokens("今天我们去公园"), tokens("今天我们在家里看书")
    lcs = 2  # 今天, 我们
    p, rec = lcs / len(c), lcs / len(r)
    assert rouge_l("今天我们去公园", "今天我们在家里看书") == pytest.approx(2 * p * rec / (p + rec))
    assert rouge_l("", "你好") == 0.0 and rouge_l("苹果", "香蕉") == 0.0


def test_distinct_n_counts_unique_ngrams_over_all_replies():
    assert distinct_n(["喵 喵 喵", "喵"], 1) == pytest.approx(1 / 4)
    # 今天/天气/很/好 and 今天/天气/不好: bigrams (今天,天气) x2, (天气,很), (很,好), (天气,不好): 4 of 5 distinct
    assert distinct_n(["今天 天气 很好", "今天 天气 不好"], 2) == pytest.approx(4 / 5)
    assert distinct_n([], 1) == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "作为一个人工智能，我没有感情。",
        "我是一个由某公司开发的大语言模型。",
        "我只是一个AI助手，不能回答这个问题。",
        "我是 rolechat 内置的演示模型，会尽量回答你的问题。",
        "As an AI language model, I cannot do that.",
        "I'm just an assistant.",
    ],
)
def test_breaking_character_is_detected(text):
    assert breaks_character(text)


@pytest.mark.parametrize(
    "text", ["我是一只名叫喵喵的小猫喵~", "臣妾做不到啊！", "作为皇上的妃子，我当然知道。", "I am a cat."]
)
def test_in_character_lines_pass(text):
    assert not breaks_character(text)


def test_catchphrase_is_the_longest_common_ending():
    assert detect_catchphrase(["你好呀喵~", "我想吃鱼喵~", "晒太阳喵~ ", "不要"]) == "喵~"
    assert detect_catchphrase(["好。", "对。", "嗯。"]) == ""  # punctuation only is no catchphrase
    assert detect_catchphrase(["甲", "乙", "丙"]) == ""
    # most lines end in 了喵~, every line in 喵~: the tic is 喵~ (了 is the word before it)
    assert detect_catchphrase(["主人了喵~", "好饿了喵~", "困了喵~", "玩球喵~", "抱抱喵~"]) == "喵~"
    assert detect_catchphrase(["你好呀喵~", "吃鱼呀喵~", "晒太阳呀喵~"]) == "呀喵~"  # every line: still the longest


def test_held_out_prompts_are_found_again_from_the_manifest(tmp_path):
    records = [{"instruction": f"问题{i}", "output": f"回答{i}喵~"} for i in range(40)]
    data = tmp_path / "cat.json"
    data.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    from rolechat.finetune.data import load_dataset
    from rolechat.finetune.trainer import held_out

    expected = {load_dataset(data).conversations[i].record for i in held_out(40, 0.1, 7)}
    m = PersonaManifest(name="cat", data={"file": str(data)}, hyperparameters={"eval_ratio": 0.1, "seed": 7})
    items, _, found = held_out_items(m)
    assert found == expected and len(items) == 4
    assert all(i.messages[-1]["role"] == "user" and i.reference.endswith("喵~") for i in items)
    m.data["eval_records"] = [1, 2]  # recorded by newer training runs: used as is
    assert [i.record for i in held_out_items(m)[0]] == [1, 2]
    m.data["eval_records"] = []  # trained with eval_ratio 0: says so, not "the file changed?"
    with pytest.raises(EvalError, match="without a held-out split"):
        held_out_items(m)
    gone = PersonaManifest(name="cat", data={"file": str(tmp_path / "nope.json")})
    with pytest.raises(EvalError, match="pass --data"):
        held_out_items(gone)


def test_train_can_evaluate_the_new_persona_at_the_end(tiny_qwen2, tmp_path):
    from typer.testing import CliRunner

    from rolechat.cli import app
    from rolechat.llm.personas import PersonaManifest
    from rolechat.settings import personas_dir

    records = [{"instruction": f"问题{i}", "output": f"回答{i}喵~"} for i in range(12)]
    data = tmp_path / "cat.json"
    data.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    args = ["train", "--data", str(data), "--persona", "cat", "--base", str(tiny_qwen2), "--max-steps", "1"]
    result = CliRunner().invoke(app, [*args, "--eval-persona", "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    assert "cat vs" in result.output and "ROUGE-L" in result.output
    saved = PersonaManifest.load(personas_dir() / "cat").evaluation
    assert saved["prompts"] == 1 and saved["catchphrase"] == "喵~" and set(saved["persona"]) >= {"rouge_l", "stopped"}


def _cat_data(tmp_path, n: int = 12):
    records = [{"instruction": f"问题{i}", "output": f"回答{i}喵~"} for i in range(n)]
    data = tmp_path / "cat.json"
    data.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return data


def test_train_json_with_eval_persona_prints_one_json_document(tiny_qwen2, tmp_path):
    from typer.testing import CliRunner

    from rolechat.cli import app

    args = ["train", "--data", str(_cat_data(tmp_path)), "--persona", "cat", "--base", str(tiny_qwen2)]
    result = CliRunner().invoke(app, [*args, "--max-steps", "1", "--json", "--eval-persona", "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # the whole of stdout is ONE document (`| jq` reads it)
    assert doc["output"].endswith("cat") and "train_loss" in json.dumps(doc["metrics"])
    report = doc["eval_persona"]
    assert report["persona"] == "cat" and report["prompts"] == 1 and report["catchphrase"] == "喵~"
    assert set(report["metrics"]) == {"persona", "base"} and 0 <= report["metrics"]["persona"]["rouge_l"] <= 1
    persona, base = report["metrics"]["persona"], report["metrics"]["base"]
    assert persona["perplexity"] >= 1 and base["perplexity"] >= 1  # both sides' replies scored by the base model
    assert report["fluency_ratio"] == pytest.approx(persona["perplexity"] / base["perplexity"])
    assert report["catchphrase_share"] == persona["catchphrase"]
    assert report["saved"].endswith("persona.json")


def test_train_json_reports_the_persona_even_when_its_check_fails(tiny_qwen2, tmp_path):
    from typer.testing import CliRunner

    from rolechat.cli import app

    args = ["train", "--data", str(_cat_data(tmp_path)), "--persona", "cat", "--base", str(tiny_qwen2)]
    result = CliRunner().invoke(app, [*args, "--max-steps", "1", "--eval-ratio", "0", "--json", "--eval-persona"])
    assert result.exit_code == 1  # no held-out split to evaluate on
    doc = json.loads(result.stdout)
    assert doc["eval_persona"] is None and doc["output"].endswith("cat")
    assert "error:" in result.stderr and "held-out" in result.stderr


def test_a_remote_runtime_skips_the_fluency_ratio_and_says_why(tiny_qwen2, monkeypatch):
    """A server generates but cannot score text: the report skips fluency with the server's reason, the rest
    is measured (RemoteRuntime inherits Runtime's methods, so only its own refusal tells the two apart)."""
    from rolechat.finetune.persona_eval import EvalItem, evaluate_persona
    from rolechat.llm import LLMConfig, load_runtime
    from rolechat.llm.remote import RemoteRuntime
    from rolechat.settings import personas_dir
    from tests.app_support import make_adapter

    make_adapter(tiny_qwen2, personas_dir() / "cat", 1)
    runtime = load_runtime(LLMConfig(model=str(tiny_qwen2), max_new_tokens=4))
    monkeypatch.setattr(runtime, "reply_loss", RemoteRuntime.reply_loss.__get__(runtime))
    items = [EvalItem([{"role": "user", "content": "你好"}], "你好喵~")]
    report = evaluate_persona(runtime, "cat", items, max_new_tokens=4, catchphrase="喵~")
    assert report["fluency_ratio"] is None and "remote server" in report["skipped"]["fluency_ratio"]
    assert "perplexity" not in report["metrics"]["persona"] and 0 <= report["metrics"]["persona"]["rouge_l"] <= 1
