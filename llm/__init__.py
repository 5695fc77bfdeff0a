"""The local model runtime: load a base model, render chats, stream tokens, switch persona adapters.

Knows nothing of `rag` or `finetune`. Heavy libraries load only when a model is loaded.
"""

from llm.personas import BASE_PERSONA, PersonaEntry, PersonaError, PersonaManifest, discover
from llm.templates import ChatFormat, TemplateError, render_prompt, render_supervised, resolve_format

__all__ = [
    "BASE_PERSONA",
    "ChatFormat",
    "PersonaEntry",
    "PersonaError",
    "PersonaManifest",
    "TemplateError",
    "discover",
    "render_prompt",
    "render_supervised",
    "resolve_format",
]
