"""What the chat adds around its characters, in the chat page's sidebar: lorebooks bound to this chat (attach and
detach from the library, or upload a new one into it), a scenario override and an author's note. The same
setting serves a solo chat and a scene (a scene's group lorebook and scenario), is kept with the saved chat
(`ChatLog.setting`), and carries the timed lore state (sticky, cooldown) from one turn to the next.

Session keys: chat_books, chat_scenario, chat_note, chat_note_depth, lore_state.
"""

from __future__ import annotations

import logging
from typing import Any

import streamlit as st

from ui import state
from ui.i18n import t

__all__ = ["KEYS", "restore", "saved", "setting_inputs"]

log = logging.getLogger(__name__)

KEYS = ("chat_books", "chat_scenario", "chat_note", "chat_note_depth")


def _upload() -> None:
    """Add an uploaded lorebook to the library and attach it to this chat."""
    upload = st.file_uploader(t("side.lorebook_upload"), type=["json", "png"], key="book_upload")
    if upload is None or not st.button(t("side.lorebook_add"), key="book_add", width="stretch"):
        return
    from rolechat import settings
    from rolechat.conversation import ConversationConfig
    from rolechat.conversation.books import add_book
    from rolechat.conversation.characters import read_upload

    try:
        limit = settings.build(ConversationConfig, "chat", state.file_data()).card_max_bytes
        name, _ = read_upload(upload.getvalue(), upload.name, lambda p: add_book(p, replace=True, max_bytes=limit))
    except (ValueError, OSError) as exc:  # CardError names the file and field
        st.error(t("side.lorebook_failed", error=exc))
        return
    st.session_state["chat_books_next"] = [*st.session_state.get("chat_books", []), name]
    st.rerun()


def setting_inputs() -> Any:
    """Sidebar: this chat's lorebooks, scenario override and author's note, as a ChatSetting."""
    from rolechat.conversation.books import list_books
    from rolechat.conversation.setting import AuthorsNote, ChatSetting

    books = [name for name, _, error in list_books() if not error]
    if "chat_books_next" in st.session_state:  # a book uploaded in the previous run
        st.session_state["chat_books"] = st.session_state.pop("chat_books_next")
    st.session_state["chat_books"] = [b for b in st.session_state.get("chat_books") or [] if b in books]
    with st.expander(t("side.world_header"), expanded=bool(st.session_state["chat_books"])):
        chosen = st.multiselect(t("side.lorebooks"), books, key="chat_books", help=t("side.lorebooks_help"))
        _upload()
        scenario = st.text_area(t("side.scenario"), key="chat_scenario", height=68, help=t("side.scenario_help"))
        note = st.text_area(t("side.note"), key="chat_note", height=68, help=t("side.note_help"))
        st.session_state.setdefault("chat_note_depth", 4)
        depth = st.number_input(t("side.note_depth"), 0, 100, key="chat_note_depth")
    return ChatSetting(
        lorebooks=list(chosen),
        scenario=scenario or "",
        authors_note=AuthorsNote(note, depth=int(depth)) if (note or "").strip() else None,
        lore_state=dict(st.session_state.get("lore_state") or {}),
    )


def saved() -> dict[str, Any]:
    """The chat's setting as the saved chat keeps it."""
    from rolechat.conversation.setting import AuthorsNote, ChatSetting

    note = st.session_state.get("chat_note") or ""
    depth = int(st.session_state.get("chat_note_depth") or 4)
    setting = ChatSetting(
        lorebooks=list(st.session_state.get("chat_books") or []),
        scenario=st.session_state.get("chat_scenario") or "",
        authors_note=AuthorsNote(note, depth=depth) if note.strip() else None,
        lore_state=dict(st.session_state.get("lore_state") or {}),
    )
    return setting.as_dict()


def restore(setting: dict[str, Any] | None) -> None:
    """Put a saved chat's setting back in the sidebar (an empty one for a new chat)."""
    setting = setting or {}
    note = setting.get("authors_note") or {}
    st.session_state["chat_books"] = list(setting.get("lorebooks") or [])
    st.session_state["chat_scenario"] = setting.get("scenario") or ""
    st.session_state["chat_note"] = note.get("text") or ""
    st.session_state["chat_note_depth"] = int(note.get("depth", 4))
    st.session_state["lore_state"] = dict(setting.get("lore_state") or {})
