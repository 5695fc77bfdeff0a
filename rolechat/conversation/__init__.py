"""The conversation layer: the one place that joins the model runtime (`rolechat.llm`) and the knowledge
bases (`rolechat.rag`) into the messages the runtime renders. The app, the CLI and the API call it;
it never imports them. Each door holds a `session.Session` (a chat or a scene, turn by turn); the session asks
`engine.Engine` for each turn's prompt, and the engine asks `knowledge` for knowledge-base answers. See `engine`
for the interface, `card` and `lorebook` for
characters and world info, `worldinfo` for the scan over a turn's books, `setting` for what a chat adds
(its books, scenario, author's note, timed lore state), `scene` for group chats, `regexscripts` for
SillyTavern's regex scripts, `memory` for a character's memory of its lines.
"""

from rolechat.exports import lazy

# submodule -> the names it exports, imported on first use, so `from rolechat.conversation.config import
# ConversationConfig` (the CLI's start-up path, which builds a flag per config field) does not pull in the model
# runtime.
_EXPORTS = {
    "assembly": ["ContextOverflow", "PromptPart"],
    "config": ["ConversationConfig"],
    "engine": ["Engine", "FixedReply", "Turn"],
    "knowledge": ["Knowledge", "source_rows"],
    "session": ["Session", "Summary", "answer_chain"],
    "setting": ["UserPersona", "AuthorsNote", "ChatSetting"],
    "card": ["Character", "apply_macros", "example_dialogues", "greetings", "system_prompt"],
    "cardfile": ["read_card", "read_lorebook", "write_card", "write_lorebook"],
    "fields": ["CardError"],
    "lorebook": ["Lorebook", "LoreEntry"],
    "memory": ["CharacterMemory", "import_memory"],
    "scene": ["Scene"],
}

__all__, __getattr__, __dir__ = lazy(__name__, _EXPORTS)
