"""Conversations that last, on the chat page: saving, the saved-chat list, export, and per-message actions.

- The chat is saved (`rolechat.conversation.chats`, one JSON file per chat under ROLECHAT_HOME) after every
  change: the user's message as soon as it is sent, each reply as soon as it is complete, every edit, deletion
  and swipe. A killed app loses at most the reply being generated.
- The sidebar lists the saved chats (title, characters, time), newest first; clicking one resumes it (its
  persona, or its scene's characters, are selected again). A chat file that cannot be read is named there and
  left in place.
- The open chat can be downloaded as JSON or Markdown.
- Long chats: when a reply's prompt had to leave out older turns, the session's summary job
  (`conversation.session`) runs in a background thread and its summary is stored with the chat; later turns
  send the summary instead of them (a "summary" part in what the model saw). Solo chats only: a scene sends
  what fits.
- Every message can be edited or deleted; the last reply can be regenerated, keeping the earlier texts as
  swipes (◀ ▶ between them).

The ids of the chat shown are in `st.session_state["chat_id"]` (None until the user says something).
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from typing import Any

import streamlit as st

from rolechat.conversation import chats
from ui import world
from ui.i18n import t

__all__ = [
    "persist",
    "sidebar",
    "message_actions",
    "new_chat",
    "characters",
    "saved_summary",
    "summarise_later",
    "REGENERATE",
]

log = logging.getLogger(__name__)

REGENERATE = "regenerate"  # session key set by the regenerate button; the page regenerates on the next run
LISTED = 30  # saved chats listed in the sidebar

_summarising: set[str] = set()  # chats whose summary is being written (one job per chat at a time)
_summarising_lock = threading.Lock()


def history() -> list[dict[str, Any]]:
    return st.session_state.setdefault("history", [])


def characters() -> list[str]:
    """The chat's characters as the sidebar says: a scene's (two or more), else the one persona."""
    scene = [c for c in st.session_state.get("scene") or [] if c]
    return scene if len(scene) > 1 else [st.session_state.get("persona") or "base"]


def _started(hist: list[dict[str, Any]]) -> bool:
    return any(m.get("role") == "user" for m in hist)


def persist() -> None:
    """Save the chat shown (from the first thing the user says on); an error is shown, never raised."""
    hist = history()
    if not _started(hist):
        return
    chat_id = st.session_state.get("chat_id")
    user = st.session_state.get("user_name") or ""
    if chat_id is None:
        log_ = chats.new_chat(characters(), user)
        st.session_state["chat_id"] = log_.id
        st.session_state["chat_created"] = log_.created
    else:
        log_ = chats.ChatLog(
            id=chat_id, characters=characters(), user_name=user, created=st.session_state.get("chat_created") or 0
        )
        log_.created = log_.created or time.time()
    log_.messages = hist
    log_.setting = world.saved()
    log_.order = st.session_state.get("next_speaker") or ""
    try:
        chats.save_chat(log_)
    except (OSError, ValueError) as exc:
        log.exception("saving the chat")
        st.error(t("conv.save_failed", error=exc))


def new_chat() -> None:
    """Start a new chat (the one shown stays saved)."""
    st.session_state["history"] = []
    st.session_state.pop("pending", None)
    st.session_state.pop("chat_id", None)
    st.session_state.pop("chat_created", None)
    world.restore(None)  # a new chat binds no lorebook of its own (SillyTavern's chat lore is per chat)


def _open(chat_id: str) -> None:
    try:
        saved = chats.load_chat(chat_id)
    except (OSError, ValueError) as exc:
        st.session_state["chat_flash"] = str(exc)
        return
    new_chat()
    st.session_state["history"] = saved.messages
    st.session_state["chat_id"] = saved.id
    st.session_state["chat_created"] = saved.created
    if saved.user_name:
        st.session_state["user_name"] = saved.user_name
    world.restore(saved.setting)
    if saved.order:
        st.session_state["next_speaker"] = saved.order
    if saved.scene:
        st.session_state["scene"] = list(saved.characters)
    else:
        st.session_state["scene"] = []
        st.session_state["persona"] = saved.characters[0] if saved.characters else "base"


def _label(saved: chats.ChatLog, names: dict[str, str]) -> str:
    when = time.strftime("%m-%d %H:%M", time.localtime(saved.updated))
    who = "、".join(names.get(c, c) for c in saved.characters)
    return f"{saved.display_title()}  \n{who} · {when}"


def sidebar(names: dict[str, str]) -> None:
    """The saved chats, a new-chat button and the export buttons; `names`: persona -> what it is called."""
    st.subheader(t("conv.header"))
    flash = st.session_state.pop("chat_flash", None)
    if flash:
        st.error(t("conv.open_failed", error=flash))
    st.button(t("conv.new"), key="chat_new", on_click=new_chat, width="stretch", icon=":material/add:")
    saved, errors = chats.list_chats()
    current = st.session_state.get("chat_id")
    for entry in saved[:LISTED]:
        st.button(
            _label(entry, names),
            key=f"chat_open_{entry.id}",
            on_click=_open,
            args=(entry.id,),
            width="stretch",
            type="primary" if entry.id == current else "secondary",
        )
    for error in errors:
        st.warning(t("conv.bad_file", error=error), icon="⚠️")
    shown = next((c for c in saved if c.id == current), None)
    if shown is not None:
        left, right = st.columns(2)
        left.download_button(
            "JSON", chats.to_json(shown), f"{shown.id}.json", "application/json", key="chat_export_json"
        )
        right.download_button(
            "Markdown", chats.to_markdown(shown, names), f"{shown.id}.md", "text/markdown", key="chat_export_md"
        )


# -- per-message actions --------------------------------------------------------------------------------


def _edit(index: int, key: str) -> None:
    hist = history()
    if 0 <= index < len(hist):
        text = st.session_state.get(key, hist[index]["content"])
        msg = hist[index]
        msg["content"] = text
        if msg.get("swipes"):
            msg["swipes"][msg.get("swipe", 0)] = text
        persist()


def _delete(index: int) -> None:
    hist = history()
    if 0 <= index < len(hist):
        del hist[index]
        persist()


def _swipe(index: int, step: int) -> None:
    hist = history()
    if 0 <= index < len(hist):
        msg = hist[index]
        chats.select_swipe(msg, msg.get("swipe", 0) + step)
        persist()


def _regenerate() -> None:
    st.session_state[REGENERATE] = True


def message_actions(index: int, msg: dict[str, Any], last_reply: bool) -> None:
    """Edit/delete for one message; regenerate and the swipes for the last reply."""
    if msg.get("greeting"):
        return
    tag = zlib.crc32(msg.get("content", "").encode("utf-8"))
    cols = st.columns([1, 1, 1, 1, 6]) if last_reply else st.columns([1, 9])
    with cols[0].popover("", icon=":material/edit:", help=t("conv.edit")):
        key = f"msg_edit_{index}_{tag}"
        st.text_area(t("conv.edit"), msg.get("content", ""), key=key, label_visibility="collapsed")
        a, b = st.columns(2)
        a.button(t("conv.save"), key=f"msg_save_{index}", on_click=_edit, args=(index, key))
        b.button(t("conv.delete"), key=f"msg_delete_{index}", on_click=_delete, args=(index,))
    if not last_reply:
        return
    cols[1].button("", icon=":material/refresh:", key="msg_regenerate", help=t("conv.regenerate"), on_click=_regenerate)
    swipes = msg.get("swipes") or []
    if len(swipes) > 1:
        at = msg.get("swipe", 0)
        cols[2].button("◀", key="msg_swipe_prev", on_click=_swipe, args=(index, -1), disabled=at == 0)
        cols[3].button("▶", key="msg_swipe_next", on_click=_swipe, args=(index, 1), disabled=at >= len(swipes) - 1)
        cols[4].caption(f"{at + 1}/{len(swipes)}")


# -- long chats -----------------------------------------------------------------------------------------


def saved_summary() -> dict[str, Any] | None:
    """The saved summary ({"text", "covers"}) of the chat shown; None without one (`Summary.of` checks it)."""
    chat_id = st.session_state.get("chat_id")
    if not chat_id:
        return None
    try:
        return chats.load_chat(chat_id).summary
    except (OSError, ValueError):
        return None


def summarise_later(job) -> None:
    """Run a session's summary job (`Session.summary_job`) in the background and save its summary with the chat
    shown; one job per chat at a time."""
    chat_id = st.session_state.get("chat_id")
    if not chat_id:
        return
    with _summarising_lock:
        if chat_id in _summarising:
            return
        _summarising.add(chat_id)

    def run() -> None:
        try:
            summary = job.run()
            if summary is None:  # nothing written: keep sending what fits, as before
                log.warning("the model wrote no summary for chat %s", chat_id)
                return
            chats.update_summary(chat_id, {**summary.as_dict(), "updated": time.time()})
        except Exception:  # a failed summary leaves the chat as it was: the turns are dropped, as before
            log.exception("summarising chat %s", chat_id)
        finally:
            with _summarising_lock:
                _summarising.discard(chat_id)

    threading.Thread(target=run, name=f"summary-{chat_id}", daemon=True).start()
