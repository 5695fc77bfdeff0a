"""Hand-written Chinese text the demo model learns from: question paraphrases and answers by topic, system
prompts, the no-answer replies and the made-up material of the answer-from-context dialogues.

The text itself is data, in `phrases.toml` beside this file (everything there was written for rolechat, nothing
copied from elsewhere); this module gives it the names `llm.demo.dialogues` expands into a few thousand chat
dialogues. Keep answers short and self-contained so a tiny model can learn them nearly by heart.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

_DATA = tomllib.loads(Path(__file__).with_name("phrases.toml").read_text(encoding="utf-8"))
_MATERIAL: dict[str, str | list[str]] = _DATA["material"]

# Each topic: (user phrasings, assistant answers). Any phrasing may be paired with any answer.
TOPICS: dict[str, tuple[list[str], list[str]]] = {
    name: (topic["ask"], topic["answer"]) for name, topic in _DATA["topics"].items()
}
SYSTEM_PROMPTS: list[str] = _DATA["system_prompts"]
NO_ANSWER: list[str] = _DATA["no_answer"]  # answers when the context does not contain the answer


def _material(name: str) -> list[str]:
    return list(_MATERIAL[name])  # a string stands for the list of its characters


PLACE_HEADS = _material("place_heads")
PLACE_TAILS = _material("place_tails")
PROVINCES = _material("provinces")
FAMOUS_FOR = _material("famous_for")
SURNAMES = _material("surnames")
GIVEN = _material("given")
JOBS = _material("jobs")
HOBBIES = _material("hobbies")
CITIES = _material("cities")
ITEMS = _material("items")
COLORS = _material("colors")
ORGS = _material("orgs")
WEEKDAYS = _material("weekdays")
EVENTS = _material("events")
