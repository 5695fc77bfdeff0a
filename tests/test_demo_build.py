"""The demo build pipeline on a tiny corpus: tokens of at most one Chinese character, length-bucketed batches,
saves along the way."""

from __future__ import annotations

import json
import random

import pytest

from rolechat.llm.demo.build import BuildSettings, _batches, _copy_drills, _tensors, build
from tests.tiny import build_tiny

CHAT = [
    {"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！欢迎使用演示模型。"}]},
    {"messages": [{"role": "user", "content": "茶园几点开门？"}, {"role": "assistant", "content": "上午八点半。"}]},
]
RAG = {
    "messages": [
        {"role": "user", "content": "[1] 来源：茶园.md（line 1）\n茶园每天上午八点半开门。\n\n问题：茶园几点开门？"},
        {"role": "assistant", "content": "茶园每天上午八点半开门[1]。"},
    ],
    "synthetic": True,
}


def test_batches_group_similar_lengths_within_the_token_budget():
    rng = random.Random(0)
    examples = [([1] * n, [1] * n) for n in [5, 300, 40, 41, 42, 600, 7, 8]]
    batches = _batches(examples, max_len=500, batch_tokens=100, rng=rng)
    seen = sorted(i for b in batches for i in b)
    assert seen == [0, 1, 2, 3, 4, 6, 7]  # the 600-token example is over max_len and left out
    for b in batches:
        width = max(len(examples[i][0]) for i in b)
        assert len(b) == 1 or width * len(b) <= 100


def _tiny_corpus(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "dialogues.jsonl").write_text(
        "\n".join(json.dumps(d, ensure_ascii=False) for d in CHAT) + "\n", encoding="utf-8"
    )
    (corpus / "rag_dialogues.jsonl").write_text(json.dumps(RAG, ensure_ascii=False) + "\n", encoding="utf-8")
    (corpus / "prose.txt").write_text("茶园在山上。\n", encoding="utf-8")
    return corpus


TINY = {"vocab_size": 600, "hidden_size": 32, "layers": 2, "heads": 2, "kv_heads": 1, "intermediate_size": 64}
TINY.update(threads=1, block_size=256, positions=256)


def test_tiny_build_keeps_chinese_characters_whole_and_saves(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    corpus = _tiny_corpus(tmp_path)
    extra = tmp_path / "more.jsonl"  # e.g. another seed of scripts/demo_rag_dialogues.py
    extra.write_text(json.dumps(RAG, ensure_ascii=False) + "\n", encoding="utf-8")
    cfg = BuildSettings(
        steps=2,
        **TINY,
        batch_tokens=512,
        warmup=1,
        save_every=1,
        copy_share=0.5,
        context_weight=0.3,
        curriculum_steps=1,
        curriculum_len=64,
        extra=(str(extra),),
    )
    out = build(tmp_path / "model", cfg, corpus_dir=corpus, progress=False)
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tok = AutoTokenizer.from_pretrained(out)
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    longest = max(len(t) for t in tok.get_vocab() if t not in tok.all_special_tokens and all(c in byte_of for c in t))
    assert longest == 3  # token_bytes: a token holds at most one Chinese character (3 UTF-8 bytes)
    text = "茶园每天上午八点半开门，欢迎使用演示模型"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 2
    marker = json.loads((out / "rolechat_demo.json").read_text(encoding="utf-8"))
    assert marker["steps_done"] == 2 and marker["settings"]["token_bytes"] == 3


def test_copy_drills_train_only_the_repeat_and_replies_outweigh_prompts():
    from transformers import AutoTokenizer

    from rolechat.llm.demo import SHIPPED_MODEL_DIR

    tok = AutoTokenizer.from_pretrained(SHIPPED_MODEL_DIR)
    drills = _copy_drills(tok, 20, random.Random(0))
    assert len(drills) == 20
    for ids, labels in drills:
        seq_len = (len(ids) - 2) // 2
        assert ids[:seq_len] == ids[seq_len + 1 : 2 * seq_len + 1]  # characters, newline, the same characters
        assert all(len(tok.decode([i])) == 1 for i in ids[:seq_len])
        assert labels[: seq_len + 1] == [-100] * (seq_len + 1) and labels[seq_len + 1 :] == ids[seq_len + 1 :]
    examples = [([5, 6, 7, 8], [-100, -100, 7, 8])]  # a prompt (5, 6), then a reply (7, 8)
    _, w = _tensors(examples + [([5, 6], [-100, 6])], [0, 1], pad_id=0, cfg=BuildSettings(context_weight=0.25))
    assert w.tolist() == [[0.25, 0.25, 1.0, 1.0], [0.25, 1.0, 0.0, 0.0]]  # pads weigh nothing
    _, w = _tensors(examples, [0], pad_id=0, cfg=BuildSettings(loss_on="reply"))
    assert w.tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_the_drill_stage_trains_a_built_model_on_copy_drills_only(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rolechat.llm.demo.build import _drill_batch, _drill_vocab

    with pytest.raises(ValueError, match="needs base"):
        BuildSettings(drills=10)
    base = build(tmp_path / "base", BuildSettings(steps=1, **TINY), _tiny_corpus(tmp_path), False)
    tok = AutoTokenizer.from_pretrained(base)
    han, newline = _drill_vocab(tok)
    assert han and all(len(tok.decode([i])) == 1 for i in han)
    x, y = _drill_batch(han, newline, random.Random(0))
    n = (x.shape[1] - len(newline)) // 2
    assert x.shape[0] == 32 and 16 <= n <= 64  # one length per batch
    assert torch.equal(x[:, :n], x[:, n + len(newline) :]) and torch.equal(y[:, n + len(newline) :], x[:, :n])
    assert (y[:, : n + len(newline)] == -100).all()  # loss on the repeat only

    cfg = BuildSettings(base=str(base), drills=2, warmup=1, lr=1e-3, threads=1)
    out = build(tmp_path / "drilled", cfg, corpus_dir=tmp_path / "no-corpus-needed", progress=False)
    before = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).state_dict()
    after = AutoModelForCausalLM.from_pretrained(out)
    assert after.dtype == torch.float32  # a stage for the next --base, kept in full precision
    assert any(not torch.equal(before[k], v) for k, v in after.state_dict().items())
    marker = json.loads((out / "rolechat_demo.json").read_text(encoding="utf-8"))
    assert marker["stage"] == "copy drills" and marker["settings"]["drills"] == 2


def test_every_build_setting_is_a_flag():
    import dataclasses
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "rolechat.llm.demo.build", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for f in dataclasses.fields(BuildSettings):
        assert "--" + f.name.replace("_", "-") in out, f.name


def test_every_rag_file_of_the_corpus_counts_as_rag(tmp_path):
    from rolechat.llm.demo.build import load_corpus

    for name in ("dialogues.jsonl", "rag_dialogues.jsonl", "rag_knowledge.jsonl"):
        (tmp_path / name).write_text(json.dumps(CHAT[0], ensure_ascii=False) + "\n", encoding="utf-8")
    dialogues, _ = load_corpus(tmp_path)
    assert [d["rag"] for d in dialogues] == [False, True, True]  # sorted: dialogues, rag_dialogues, rag_knowledge


def test_knowledge_rewordings_differ_and_never_hit_a_benchmark_question():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import demo_rag_dialogues as gen

    bench = gen.bench_questions()
    assert len(bench) == 58  # bench/data/demo_questions_*.jsonl
    rng = random.Random(0)
    for _, questions, _ in gen.QA:
        for q in questions:
            out = gen.rewordings(rng, q, 12, bench)
            assert out and len(set(out)) == len(out) and q not in out and not set(out) & bench
    free = gen.rewordings(random.Random(1), "茶园几点开门？", 20, set())
    kept = gen.rewordings(random.Random(1), "茶园几点开门？", 20, {free[0]})
    assert free[0] not in kept and len(kept) == 20


def test_card_dialogues_are_corpus_chats_under_cards_as_the_engine_renders_them(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    monkeypatch.setenv("ROLECHAT_HOME", str(tmp_path))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import demo_card_dialogues as gen

    from rolechat.conversation import Engine
    from rolechat.llm import LLMConfig, load_runtime
    from rolechat.llm.demo import SHIPPED_MODEL_DIR

    engine = Engine(load_runtime(LLMConfig(model=str(SHIPPED_MODEL_DIR))))
    rows = gen.generate(engine, 8, seed=0)
    replies = {m["content"] for chat in gen.corpus_chats() for m in chat if m["role"] == "assistant"}
    for row in rows:
        system, *_, said, reply = row["messages"]
        assert row["card"] and system["role"] == "system" and "扮演" in system["content"]
        assert (said["role"], reply["role"]) == ("user", "assistant") and reply["content"] in replies
        assert "[" not in system["content"].split("\n\n", 1)[1].split("\n\n")[0]  # no citations in a card
    assert rows == gen.generate(engine, 8, seed=0)
    engine.close()


def test_app_shaped_invented_documents_hold_every_answer_as_written_under_a_heading_path_not_markdown():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import demo_facts as F

    words = F.load_words()
    rng = random.Random(5)
    layouts = set()
    for _ in range(200):
        doc = F.make_app_doc(rng, words)
        assert "#" not in doc.text  # the app's splitter turns headings into "标题 > 小节", never "## 小节"
        first = doc.text.split("\n", 1)[0]
        layouts.add("section" if " > " in first else "fields" if "：" in doc.text and "\n\n" in doc.text else "other")
        for question, answer in doc.qa:
            assert answer in doc.text  # the reply copies what the passage says, as written
            assert doc.entity in question or F.short_name(doc.entity) in question
    assert layouts == {"section", "fields", "other"}
    assert (F.short_name("青柠书店"), F.short_name("书店"), F.short_name("青柠")) == ("书店", "书店", "青柠")


def test_added_characters_become_one_token_and_text_the_old_merges_join_keeps_its_ids(tmp_path):
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rolechat.llm.demo import SHIPPED_MODEL_DIR
    from rolechat.llm.demo.build import _grow_embeddings, extend_tokenizer

    folder = tmp_path / "tok"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(SHIPPED_MODEL_DIR / name, folder / name)
    old = AutoTokenizer.from_pretrained(folder)
    new_chars = [c for c in "票柠陨晴电" if len(old(c, add_special_tokens=False)["input_ids"]) > 1]
    assert len(new_chars) >= 3  # the shipped tokenizer splits these into byte tokens
    kept = "什么时候开门？茶园每天上午八点半开门"  # no character of new_chars
    made = extend_tokenizer(folder, [*new_chars, "茶"])  # 茶 is a token already: nothing to add
    new = AutoTokenizer.from_pretrained(folder)
    assert len(new) == len(old) + len(made)
    for c in new_chars:
        (i,) = new(c, add_special_tokens=False)["input_ids"]
        assert i in made and old.decode(made[i]) == c  # the old ids it stands for spell the character
    assert new(kept, add_special_tokens=False)["input_ids"] == old(kept, add_special_tokens=False)["input_ids"]
    text = "门票四十元，青柠记账，晴天"
    assert new.decode(new(text, add_special_tokens=False)["input_ids"]) == text

    model = AutoModelForCausalLM.from_pretrained(build_tiny(tmp_path / "model", tokenizer=old))  # vocab len(old)
    before = model.get_input_embeddings().weight.detach().clone()
    _grow_embeddings(model, made, len(new))
    after = model.get_input_embeddings().weight
    assert after.shape[0] == len(new) and torch.equal(after[: len(old)], before)
    for i, parts in made.items():
        assert torch.allclose(after[i], before[parts].mean(0))
    assert model.get_output_embeddings().weight.data_ptr() == after.data_ptr()  # still tied


def test_a_build_with_add_chars_continues_the_base_on_a_grown_vocabulary(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rolechat.llm.demo.chars import common_chars

    corpus = _tiny_corpus(tmp_path)
    base = build(tmp_path / "base", BuildSettings(steps=1, **TINY), corpus, False)
    before = AutoTokenizer.from_pretrained(base)
    split = [c for c in common_chars(20) if len(before(c, add_special_tokens=False)["input_ids"]) > 1]
    assert split  # the tiny corpus lacks most common characters
    cfg = BuildSettings(steps=1, **TINY, base=str(base), add_chars=20)
    out = build(tmp_path / "grown", cfg, corpus, False)
    tok = AutoTokenizer.from_pretrained(out)
    assert len(tok) > len(before)
    assert all(len(tok(c, add_special_tokens=False)["input_ids"]) == 1 for c in common_chars(20))
    assert AutoModelForCausalLM.from_pretrained(out).config.vocab_size == len(tok)


def test_add_chars_of_gives_a_file_its_own_tokens_and_cat_chats_are_always_trained(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rolechat.llm.demo.build import _examples

    corpus = _tiny_corpus(tmp_path)
    base = build(tmp_path / "base", BuildSettings(steps=1, **TINY), corpus, False)
    cat = {
        "messages": [{"role": "user", "content": "你饿吗？"}, {"role": "assistant", "content": "想吃罐头喵~"}],
        "cat": True,
    }
    (corpus / "cat_dialogues.jsonl").write_text(json.dumps(cat, ensure_ascii=False) + "\n", encoding="utf-8")
    assert len(AutoTokenizer.from_pretrained(base)("喵", add_special_tokens=False)["input_ids"]) > 1
    cfg = BuildSettings(steps=1, **TINY, base=str(base), add_chars_of=(str(corpus / "cat_dialogues.jsonl"),))
    out = build(tmp_path / "grown", cfg, corpus, False)
    tok = AutoTokenizer.from_pretrained(out)
    assert all(len(tok(c, add_special_tokens=False)["input_ids"]) == 1 for c in "喵罐头饿吃想")
    assert tok.convert_ids_to_tokens(tok("喵", add_special_tokens=False)["input_ids"])[0] not in tok.all_special_tokens
    assert AutoModelForCausalLM.from_pretrained(out).config.vocab_size == len(tok)
    only_cat = BuildSettings(steps=1, **TINY, other_share=1e-9)  # the chat corpus left out, the cat chat kept
    examples = _examples(tok, [{**cat}, *CHAT], [], only_cat)
    assert len(examples) == 1 and tok.decode([i for i in examples[0][1] if i != -100]).startswith("想吃罐头喵~")


def test_deepen_adds_zero_output_copies_that_keep_what_the_model_computes(tmp_path, tiny_qwen2):
    import torch
    from transformers import AutoModelForCausalLM

    from rolechat.llm.demo.build import deepen

    with pytest.raises(ValueError, match="needs base"):
        BuildSettings(deepen=1)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2).eval()  # 2 layers
    ids = torch.tensor([[3, 14, 15, 9, 2, 6]])
    with torch.no_grad():
        before = model(ids).logits
        greedy = model.generate(ids, max_new_tokens=5, do_sample=False)  # exercises the KV cache
    first = model.model.layers[0]
    deepen(model, 2)
    assert model.config.num_hidden_layers == len(model.model.layers) == 6
    assert model.model.layers[0] is first and model.model.layers[3] is not first
    twin = model.model.layers[1]
    assert torch.equal(twin.self_attn.q_proj.weight, first.self_attn.q_proj.weight)
    assert not twin.self_attn.o_proj.weight.any() and not twin.mlp.down_proj.weight.any()
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, before, atol=1e-6)
        assert torch.equal(model.generate(ids, max_new_tokens=5, do_sample=False), greedy)
    model.save_pretrained(tmp_path / "deep")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "deep").eval()
    with torch.no_grad():
        assert torch.allclose(again(ids).logits, before, atol=1e-6)


def test_device_is_checked_before_any_work(tmp_path):
    import torch

    with pytest.raises(ValueError, match="device"):
        BuildSettings(device="tpu")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: --device cuda would train")
    out, corpus = tmp_path / "never", _tiny_corpus(tmp_path)
    with pytest.raises(RuntimeError, match="--device cuda:1: torch sees no CUDA GPU"):
        build(out, BuildSettings(steps=1, **TINY, device="cuda:1"), corpus, False)
    with pytest.raises(RuntimeError, match="no CUDA GPU"):  # the drill stage too
        build(out, BuildSettings(steps=1, **TINY, device="cuda", base=str(tmp_path), drills=1), corpus, False)
    assert not out.exists()


def test_bad_build_flags_get_a_usage_error_not_a_traceback(monkeypatch, capsys):
    from rolechat.llm.demo.build import main

    for argv, message in (
        (["--steps", "0"], "steps must be >= 1, got 0"),
        (["--deepen", "1"], "deepen must be >= 0 and needs base"),
        (["--device", "tpu"], "device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
    ):
        monkeypatch.setattr("sys.argv", ["build.py", *argv])
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code == 2
        assert f"build.py: error: {message}" in capsys.readouterr().err
