"""The demo corpus writer (llm/demo/dialogues.py): made-up facts whose passages hold their answers, and a corpus
that is the same for the same seed."""

from __future__ import annotations

import random
import re

from rolechat.llm.demo.dialogues import FACT_MAKERS, generate, rag_dialogue


def test_each_made_up_fact_answers_its_questions_from_its_own_passage():
    rng = random.Random(0)
    for make in FACT_MAKERS:
        for _ in range(20):
            passage, qa, name = make(rng)
            assert passage.startswith(name) and len(qa) >= 2
            for question, answer in qa:
                assert question.startswith(name) and answer.startswith(name)
                assert set(re.findall(r"\d+", answer)) <= set(re.findall(r"\d+", passage))


def test_a_rag_dialogue_cites_a_passage_of_its_context():
    rng = random.Random(1)
    for _ in range(50):
        messages = rag_dialogue(rng)["messages"]
        context = "\n".join(m["content"] for m in messages[:-1])
        for k in re.findall(r"\[(\d)\]", messages[-1]["content"]):
            assert f"[{k}] " in context


def test_the_corpus_is_the_same_for_a_seed():
    assert generate(seed=3, n_chat=40, n_rag=40) == generate(seed=3, n_chat=40, n_rag=40)
    assert generate(seed=3, n_chat=40, n_rag=40) != generate(seed=4, n_chat=40, n_rag=40)


def test_cat_chats_end_every_reply_in_the_tic_and_never_use_the_personas_prompts():
    import json

    from rolechat.llm.demo import cats

    chats = cats.generate(seed=0, n=300)
    assert chats == cats.generate(seed=0, n=300) and chats != cats.generate(seed=1, n=300)
    persona_prompts = cats._persona_prompts()
    assert len(persona_prompts) > 50  # examples/personas/cat.json was read
    for chat in chats:
        system, *turns = chat["messages"]
        assert system["role"] == "system" and "猫" in system["content"] and chat["cat"]
        for user, reply in zip(turns[::2], turns[1::2], strict=True):
            assert reply["content"].endswith(cats.TIC) and "{" not in reply["content"]
            assert user["content"].split("\n")[0] not in persona_prompts
    shipped = cats.CAT_FILE.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in shipped] == cats.generate()  # the committed corpus regenerates
