"""conversation.report: the prompt view as a file, every part with its book and why, then the messages."""

from __future__ import annotations

import json

from rolechat.conversation.assembly import PromptPart
from rolechat.conversation.engine import Turn
from rolechat.conversation.report import report
from rolechat.llm import GenerationParams


def turn() -> Turn:
    parts = [
        PromptPart("system", "system prompt", 5, "你是林夕。"),
        PromptPart("lore-triggered", "天气: 雨", 3, "下雨", source="天气", why="key 雨; order 10; before_char"),
        PromptPart("lore-skipped", "天气: 雪", 3, "下雪", included=False, source="天气", why="left out: budget"),
        PromptPart("history", "user", 2, "很早的话", included=False),
    ]
    messages = [{"role": "system", "content": "你是林夕。\n\n下雨"}, {"role": "user", "content": "下雨了"}]
    return Turn("linxi", messages, GenerationParams(), parts, prompt_tokens=20, budget=100, lore_state={"sticky": {}})


def test_the_text_report_lists_every_part_with_its_fate_and_the_messages():
    text = report([turn(), turn()])
    assert text.startswith("# turn 1 (linxi)\nprompt: 20 tokens of 100 the context leaves") and "# turn 2" in text
    assert "[sent] lore-triggered | 天气: 雨 | 3 tokens | book 天气 | key 雨; order 10; before_char\n    下雨" in text
    assert "[left out] lore-skipped | 天气: 雪 | 3 tokens | book 天气 | left out: budget" in text
    assert "[dropped] history | user" in text
    assert "### system\n你是林夕。\n\n下雨\n\n### user\n下雨了" in text


def test_the_json_report_is_the_same_data():
    data = json.loads(report([turn()], as_json=True))
    record = data["turns"][0]
    assert record["persona"] == "linxi" and record["messages"][1] == {"role": "user", "content": "下雨了"}
    assert record["parts"][1]["source"] == "天气" and record["parts"][2]["included"] is False
