"""The conversation layer: the one place that joins the model runtime (`rolechat.llm`) and the knowledge
bases (`rolechat.rag`) into the messages the runtime renders. The app, the CLI and the API call it;
it never imports them. See `rolechat.conversation.engine` for the interface.
"""

from rolechat.conversation.assembly import ContextOverflow, PromptPart
from rolechat.conversation.config import ConversationConfig
from rolechat.conversation.engine import Engine, FixedReply, Turn, UserPersona, source_rows

__all__ = [
    "ContextOverflow",
    "ConversationConfig",
    "Engine",
    "FixedReply",
    "PromptPart",
    "Turn",
    "UserPersona",
    "source_rows",
]
