"""The conversation layer: the one place that joins the model runtime (`rolechat.llm`) and the knowledge
bases (`rolechat.rag`) into the messages the runtime renders. The app, the CLI and the API call it;
it never imports them. See `rolechat.conversation.engine` for the interface, `card` and `lorebook` for
characters and world info, `worldinfo` for the scan over a turn's books, `setting` for what a chat adds
(its books, scenario, author's note, timed lore state), `scene` for group chats, `regexscripts` for
SillyTavern's regex scripts, `memory` for a character's memory of its lines.
"""

from rolechat.exports import lazy

# name -> submodule; imported on first use, so `from rolechat.conversation.config import ConversationConfig`
# (the CLI's start-up path, which builds a flag per config field) does not pull in the model runtime.
_EXPORTS = {
    "ContextOverflow": "assembly",
    "PromptPart": "assembly",
    "ConversationConfig": "config",
    "Engine": "engine",
    "FixedReply": "engine",
    "Turn": "engine",
    "UserPersona": "setting",
    "source_rows": "engine",
    "Character": "card",
    "apply_macros": "card",
    "example_dialogues": "card",
    "greetings": "card",
    "system_prompt": "card",
    "read_card": "cardfile",
    "read_lorebook": "cardfile",
    "write_card": "cardfile",
    "write_lorebook": "cardfile",
    "CardError": "lorebook",
    "Lorebook": "lorebook",
    "LoreEntry": "lorebook",
    "CharacterMemory": "memory",
    "import_memory": "memory",
    "AuthorsNote": "setting",
    "ChatSetting": "setting",
    "Scene": "scene",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
