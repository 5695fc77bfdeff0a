"""A card bigger than the context (the size of SillyTavern's sample card, on the demo model's 2,048 tokens): the
engine drops example dialogues, then the oldest history, says once what it left out, keeps the lore entry the
message triggers, and refuses only when the card's fixed parts and the message cannot fit, naming
llm.context_length."""

from __future__ import annotations

import pytest

from rolechat.conversation import ContextOverflow, Engine
from rolechat.conversation.card import Character


def guardian_card() -> dict:
    desc = (
        "{{char}} is the guardian spirit of the Whisperwood, an old forest of silver birches and moss-covered stones. "
        "She looks like a young woman with long amber hair braided with small white flowers, green eyes that glow "
        "faintly in the dark, and a cloak woven from living leaves. She speaks softly and warmly, and she is patient "
        "with travellers who lose their way. Her magic is the magic of growth: she closes wounds, calms fevers, makes "
        "seeds sprout within minutes and can ask the trees to bend their branches into a shelter. Using too much of "
        "it leaves her tired and pale for a day. She has lived in the forest for three hundred years and remembers "
        "every storm. She cares deeply for the small animals of the wood and keeps a family of foxes near her glade. "
        "She distrusts the hunters of the northern villages, who set iron traps, and she fears the darkness that has "
        "crept into the eastern valleys since the old lighthouse on the cliff went dark. "
    ) * 1
    examples = "\n".join(
        f"<START>\n{{{{user}}}}: Where am I? Question number {i}, asked in a long and worried voice.\n"
        f"{{{{char}}}}: *She smiles and sets a cup of warm herbal tea beside you.* You are in my glade, traveller. "
        f"Rest now; the forest will keep you safe while your wounds close. Example answer number {i}, told at length."
        for i in range(8)
    )
    entries = [
        (
            "Whisperwood",
            ["whisperwood", "forest"],
            100,
            "The Whisperwood covers the hills between the river and the eastern valleys. Its paths move at night. " * 3,
        ),
        (
            "Glade",
            ["glade", "home"],
            90,
            "The glade is a ring of white stones around a spring; nothing hostile can cross the ring. " * 3,
        ),
        (
            "Shadowfang beasts",
            ["shadowfang"],
            80,
            "Shadowfang beasts are wolves made of smoke with eyes like coals; silver and sunlight drive them away. "
            * 3,
        ),
        (
            "Lighthouse",
            ["lighthouse", "cliff"],
            70,
            "The old lighthouse on the cliff kept the darkness out of the valleys until its flame died last winter. "
            * 3,
        ),
    ]
    book = {
        "entries": [
            {
                "keys": keys,
                "content": content,
                "comment": name,
                "insertion_order": order,
                "enabled": True,
                "extensions": {},
                "id": i,
            }
            for i, (name, keys, order, content) in enumerate(entries)
        ]
    }
    return {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": "Sylvie",
            "description": desc,
            "personality": "gentle, patient, protective, a little melancholic",
            "scenario": "{{user}} was attacked in the forest and wakes up in {{char}}'s glade, bandaged and weak.",
            "first_mes": ("*You wake on a bed of moss. A woman with amber hair kneels beside you.* " * 6),
            "mes_example": examples,
            "creator_notes": "",
            "system_prompt": "",
            "post_history_instructions": "",
            "alternate_greetings": [],
            "tags": [],
            "creator": "rolechat tests",
            "character_version": "1",
            "character_book": book,
            "extensions": {},
        },
    }


@pytest.fixture(scope="module")
def demo():
    from rolechat.llm import LLMConfig, load_runtime

    rt = load_runtime(LLMConfig())
    assert rt.info.is_demo and rt.info.context_length == 2048
    return rt


def test_the_card_needs_more_than_the_context(demo):
    engine = Engine(demo)
    card = Character.from_dict(guardian_card())
    turn = engine.prepare("Hello", character=card, history=[{"role": "assistant", "content": engine.greeting(card)}])
    wanted = sum(p.tokens for p in turn.parts if p.kind != "notice")
    assert wanted > demo.info.context_length  # everything together cannot fit: something must go


def test_a_big_card_chats_with_the_default_settings_and_keeps_the_lore_the_message_triggers(demo):
    engine = Engine(demo)
    card = Character.from_dict(guardian_card())
    history = [{"role": "assistant", "content": engine.greeting(card)}]
    for message in ("Hello, where am I?", "Was it a shadowfang that attacked me?"):
        turn = engine.prepare(message, character=card, history=history, params={"temperature": 0})
        assert turn.prompt_tokens <= turn.budget
        history += [{"role": "user", "content": message}, {"role": "assistant", "content": "……"}]
    kinds = {p.kind: p for p in turn.parts}
    shadow = [p for p in turn.parts if p.kind == "lore-triggered"]
    assert [p.label for p in shadow] == ["Sylvie: Shadowfang beasts"] and shadow[0].included
    assert "Shadowfang beasts are wolves made of smoke" in turn.messages[0]["content"]
    examples = [p for p in turn.parts if p.kind == "example"]
    assert examples and not any(p.included for p in examples)  # the examples went first
    assert kinds["card"].included and turn.messages[-1]["content"] == "Was it a shadowfang that attacked me?"
    notices = [p for p in turn.parts if p.kind == "notice" and p.label == "context full"]
    assert len(notices) == 1 and "8 of 8 example dialogues" in notices[0].text
    assert "llm.context_length" in notices[0].text
    assert engine.stream(turn).join().strip()  # and the model answers


def test_only_fixed_parts_that_cannot_fit_are_refused_naming_the_setting(demo):
    data = guardian_card()
    data["data"]["description"] *= 3  # the card alone is now larger than the context
    with pytest.raises(ContextOverflow, match="llm.context_length"):
        Engine(demo).prepare("Hello", character=Character.from_dict(data))
