"""The conversation layer: the one place that joins the model runtime (`rolechat.llm`) and the knowledge
bases (`rolechat.rag`) into the messages the runtime renders. The app, the CLI and the API call it;
it never imports them. See `rolechat.conversation.engine` for the interface.
"""

from rolechat.conversation.card import Character, apply_macros, example_dialogues, greetings, system_prompt
from rolechat.conversation.cardfile import read_card, read_lorebook, write_card, write_lorebook
from rolechat.conversation.engine import Engine, FixedReply, PromptPart, Turn, UserPersona, source_rows
from rolechat.conversation.lorebook import CardError, Lorebook, LoreEntry

__all__ = [
    "CardError",
    "Character",
    "Engine",
    "FixedReply",
    "LoreEntry",
    "Lorebook",
    "PromptPart",
    "Turn",
    "UserPersona",
    "apply_macros",
    "example_dialogues",
    "greetings",
    "read_card",
    "read_lorebook",
    "source_rows",
    "system_prompt",
    "write_card",
    "write_lorebook",
]
