"""The character side of the chat page: who the user is, the character's greeting, and "what the model saw".

- The user persona (name and description) is set in the sidebar; it fills `{{user}}` in the character's
  card and its description goes in the system part of the prompt.
- A chat with a character opens with its greeting as the first assistant turn; while the conversation has
  not started, the sidebar offers the alternate greetings.
- Under each reply, an expander lists every part of the prompt with its token count, dropped parts marked:
  exactly what `rolechat.conversation.Engine` assembled for that reply.
- A character card (PNG or JSON, V1/V2/V3) can be imported from the sidebar: it becomes a persona folder
  (a prompt-only character) and is selected.
"""

from __future__ import annotations

import logging
from typing import Any

import streamlit as st

from ui import state
from ui.i18n import t

__all__ = ["import_card", "user_inputs", "greeting_picker", "open_with_greeting", "show_prompt", "started"]

log = logging.getLogger(__name__)

GREETING_PREVIEW = 24  # characters of each greeting shown in the picker


def import_card(rt) -> None:
    """Sidebar: upload a character card; it is saved as a persona folder, the personas are rescanned, and the
    new character is selected on the next run."""
    flash = st.session_state.pop("import_flash", None)
    risky = st.session_state.pop("import_risky", [])
    with st.expander(t("side.import_card"), expanded=bool(risky)):
        if flash:
            st.success(flash)
        for label, key in risky:
            st.warning(t("side.import_risky", entry=label, key=key[:60]))
        upload = st.file_uploader(t("side.import_file"), type=["png", "json"], key="card_upload")
        overwrite = st.checkbox(t("side.import_overwrite"), key="card_overwrite")
        if not st.button(t("side.import_go"), key="card_import", disabled=upload is None, width="stretch"):
            return
        from rolechat import settings
        from rolechat.conversation import ConversationConfig
        from rolechat.conversation.characters import import_card as import_file

        try:
            limit = settings.build(ConversationConfig, "chat", state.file_data()).card_max_bytes
            saved, character = import_file(upload.getvalue(), upload.name, overwrite=overwrite, max_bytes=limit)
        except (ValueError, OSError) as exc:  # CardError names the file and field; an existing name says so
            st.error(t("side.import_failed", error=exc))
            return
        state.sync_personas(rt, force=True)
        st.session_state["persona_next"] = saved.name  # the picker is already drawn in this run
        st.session_state["import_flash"] = t("side.import_done", name=character.display_name)
        book = character.character_book
        st.session_state["import_risky"] = book.risky_keys() if book is not None else []
        st.rerun()


def user_inputs():
    """Sidebar: the user's name and description (a `UserPersona`)."""
    from rolechat.conversation import UserPersona

    st.subheader(t("side.user_header"))
    st.session_state.setdefault("user_name", "用户")
    name = st.text_input(t("side.user_name"), key="user_name", max_chars=40)
    description = st.text_area(t("side.user_description"), key="user_description", height=68, max_chars=1000)
    return UserPersona(name, description or "")


def started(history: list[dict[str, Any]]) -> bool:
    """Whether the user has said anything yet (before that, the greeting may still change)."""
    return any(m["role"] == "user" for m in history)


def _greetings(engine, persona: str, user) -> list[str]:
    try:
        return engine.greetings(persona, user)
    except Exception as exc:  # a broken card must not take the page down: it shows no greeting
        log.warning("greetings of %s: %s", persona, exc)
        return []


def greeting_picker(engine, persona: str, user, history: list[dict[str, Any]], sending: bool = False) -> int:
    """Sidebar: which greeting opens the chat, while the conversation has not started (index into greetings);
    `sending`: the first message is on its way in this run, so the choice is already made."""
    options = _greetings(engine, persona, user)
    if st.session_state.get("greeting_for") != persona:  # a new character starts from its first greeting
        st.session_state["greeting_for"] = persona
        st.session_state["greeting"] = 0
    if st.session_state.get("greeting", 0) >= len(options):
        st.session_state["greeting"] = 0
    if len(options) < 2 or started(history) or sending:
        return int(st.session_state.get("greeting", 0))
    labels = {
        i: t("side.greeting_option", n=i + 1, preview=" ".join(g.split())[:GREETING_PREVIEW] + "…")
        for i, g in enumerate(options)
    }
    return int(st.selectbox(t("side.greeting"), list(labels), key="greeting", format_func=labels.__getitem__))


def open_with_greeting(engine, persona: str, label: str, user, index: int, history: list[dict[str, Any]]) -> None:
    """Before the user speaks, the history is exactly the chosen greeting (or empty without one)."""
    if started(history):
        return
    options = _greetings(engine, persona, user)
    text = options[index] if 0 <= index < len(options) else ""
    want = (
        [{"role": "assistant", "content": text, "greeting": True, "persona": persona, "persona_label": label}]
        if text
        else []
    )
    if [(m["role"], m["content"]) for m in history] != [(m["role"], m["content"]) for m in want]:
        history[:] = want


def show_prompt(prompt: dict[str, Any] | None) -> None:
    """The "what the model saw" expander of one reply."""
    if not prompt or not prompt.get("parts"):
        return
    if prompt.get("fixed"):
        title = t("chat.prompt_fixed")
    else:
        title = t("chat.prompt", tokens=prompt.get("tokens", 0), budget=prompt.get("budget", 0))
    with st.expander(title):
        for part in prompt["parts"]:
            line = t("chat.part_line", kind=t(f"part.{part['kind']}"), label=part["label"], tokens=part["tokens"])
            if not part["included"]:
                line = f"~~{line}~~ " + (part.get("why") or t("chat.part_dropped"))
            elif part.get("why"):
                line += f" · {part['why']}"
            st.markdown(line)
            st.text(part["text"])
        if prompt.get("rendered"):
            st.markdown(t("chat.prompt_rendered"))
            st.code(prompt["rendered"], language=None, wrap_lines=True)
