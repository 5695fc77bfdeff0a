"""The chat page: pick a persona or character and (optionally) a knowledge base, then talk, with streamed replies.

Every prompt is assembled by `rolechat.conversation.Engine`, as in the CLI and the API. History lives in
`st.session_state["history"]`: one dict per message (`role`, `content`, and for replies `persona`, `kb`,
`sources`, `stats`, `stopped`, `prompt`: what the model saw). A chat with a character opens with its greeting
(`greeting`: True). Settings are read from the sidebar on every run, so a persona or knowledge-base switch
applies to the next message; nothing is reloaded.

A reply that is interrupted (the stop button, or a new message sent while streaming) is kept: the
streamed text is recorded in `st.session_state["pending"]` as it arrives and moved into the history,
marked as stopped, on the next run.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from ui import character, state
from ui import kb as kb_page
from ui.i18n import t

__all__ = ["ChatSettings", "render", "sidebar", "history", "recover_pending", "engine"]

log = logging.getLogger(__name__)


@dataclass
class ChatSettings:
    """What the sidebar says for the next message."""

    persona: str = "base"
    kb: str | None = None  # None: answer without a knowledge base
    k: int = 4
    mode: str = "hybrid"
    condense: bool = False  # rewrite a follow-up into a standalone question before retrieving
    params: dict[str, Any] = field(default_factory=dict)
    user: Any = None  # the UserPersona ({{user}}, and a description the character is told)
    greeting: int = 0  # which of the character's greetings opens the chat


def engine(rt, with_kb: bool = False):
    """The conversation engine over the loaded runtime, with the [rag] and [chat] settings in force.

    Cheap to build: made per run, so indexing done elsewhere is always seen; `with_kb` hands it the app's
    embedder (loaded once per process) for answering from a knowledge base."""
    from rolechat import settings as rc_settings
    from rolechat.conversation import ConversationConfig, Engine

    return Engine(
        rt,
        kb_page.rag_config(),
        embeddings=kb_page.embeddings() if with_kb else None,
        chat_cfg=rc_settings.build(ConversationConfig, "chat", state.file_data()),
    )


def history() -> list[dict[str, Any]]:
    return st.session_state.setdefault("history", [])


def recover_pending() -> None:
    """Move a reply interrupted in the previous run into the history, marked as stopped."""
    pending = st.session_state.pop("pending", None)
    if pending is not None:
        pending["stopped"] = True
        history().append(pending)


# -- sidebar --------------------------------------------------------------------------------------------


def persona_label(rt, name: str) -> str:
    if name == "base":
        return t("side.base")
    manifest = rt.manifest(name)
    display = manifest.display_name if manifest else name
    return display if display == name else f"{display} ({name})"


def _persona_picker(rt) -> str:
    names = rt.persona_names()
    if st.session_state.get("persona_next") in names:  # a character imported in the previous run
        st.session_state["persona"] = st.session_state.pop("persona_next")
    if st.session_state.get("persona") not in names:
        st.session_state["persona"] = "base"
    labels = {n: persona_label(rt, n) for n in names}  # resolved now, in this run's language
    persona = st.selectbox(t("side.persona"), names, key="persona", format_func=labels.__getitem__)
    manifest = rt.manifest(persona)
    with st.expander(t("side.system_prompt"), expanded=False):
        if manifest and manifest.system_prompt:
            st.markdown(manifest.system_prompt)
        else:
            st.caption(t("side.no_system_prompt"))
    broken = [e for e in rt.personas() if e.error]
    if broken:
        with st.expander(t("side.broken", n=len(broken))):
            for entry in broken:
                st.markdown(f"⚠️ **{entry.name}**")
                st.caption(entry.error)
    if st.button(t("side.reload_personas"), width="stretch"):
        state.sync_personas(rt, force=True)
        st.rerun()
    return persona


def _kb_picker(rt) -> tuple[str | None, int, str, bool]:
    st.subheader(t("side.kb_header"))
    names = kb_page.kb_names()
    if not names:
        st.caption(t("side.kb_none"))
        return None, 4, "hybrid", False
    defaults = kb_page.rag_defaults()
    st.session_state.setdefault("kb_on", True)
    st.session_state.setdefault("condense", not rt.info.is_demo)
    st.session_state.setdefault("k", min(defaults.k, 10))
    st.session_state.setdefault("mode", defaults.mode)
    if st.session_state.get("kb_name") not in names:
        st.session_state["kb_name"] = names[0]
    on = st.toggle(t("side.kb_on"), key="kb_on")
    name = st.selectbox(t("side.kb_pick"), names, key="kb_name", disabled=not on)
    k = st.slider(t("side.k"), 1, 10, key="k", disabled=not on)
    mode = st.selectbox(
        t("side.mode"), kb_page.MODES, key="mode", format_func=kb_page.mode_labels().__getitem__, disabled=not on
    )
    condense = st.checkbox(t("side.condense"), key="condense", disabled=not on, help=t("side.condense_help"))
    return (name if on else None), int(k), mode, bool(condense)


def _generation_settings(rt) -> dict[str, Any]:
    st.subheader(t("side.gen_header"))
    st.session_state.setdefault("temperature", min(float(rt.cfg.temperature), 1.5))
    st.session_state.setdefault("top_p", max(float(rt.cfg.top_p), 0.05))
    st.session_state.setdefault("max_new_tokens", min(rt.params().max_new_tokens, 8192))
    temperature = st.slider(t("side.temperature"), 0.0, 1.5, step=0.05, key="temperature")
    top_p = st.slider(t("side.top_p"), 0.05, 1.0, step=0.05, key="top_p")
    max_new = st.number_input(t("side.max_new_tokens"), 1, 8192, step=16, key="max_new_tokens")
    return {"temperature": float(temperature), "top_p": float(top_p), "max_new_tokens": int(max_new)}


def sidebar(rt, sending: bool = False) -> ChatSettings:
    """The sidebar's settings; `sending`: a message is on its way in this run (the greeting is then fixed)."""
    with st.sidebar:
        persona = _persona_picker(rt)
        character.import_card(rt)
        user = character.user_inputs()
        greeting = character.greeting_picker(engine(rt), persona, user, history(), sending)
        kb, k, mode, condense = _kb_picker(rt)
        params = _generation_settings(rt)
        if st.button(t("side.clear"), width="stretch", type="secondary"):
            st.session_state["history"] = []
            st.session_state.pop("pending", None)
    return ChatSettings(
        persona=persona, kb=kb, k=k, mode=mode, condense=condense, params=params, user=user, greeting=greeting
    )


# -- messages -------------------------------------------------------------------------------------------


def show_sources(sources: list[dict[str, Any]]) -> None:
    with st.expander(t("chat.sources", n=len(sources))):
        for n, src in enumerate(sources, 1):
            where = f" · {src['location']}" if src.get("location") else ""
            score = f"{src['score']:.3f}" if isinstance(src.get("score"), (int, float)) else "—"
            st.markdown(
                t("chat.source_line", n=n, file=src.get("file") or src.get("source", "?"), where=where, score=score)
            )
            st.caption(src.get("snippet", ""))


def show_meta(msg: dict[str, Any]) -> None:
    """Who answered, from which KB, and how fast: one discreet line."""
    stats = msg.get("stats") or {}
    who = msg.get("persona_label") or msg.get("persona", "")
    if msg.get("greeting"):
        st.caption(t("chat.greeting_meta", who=who))
        return
    if msg.get("kb"):
        who = f"{who} · {t('chat.meta_kb', kb=msg['kb'])}"
    line = t(
        "chat.meta",
        who=who,
        seconds=stats.get("seconds", 0.0),
        tokens=stats.get("tokens", 0),
        tps=stats.get("tokens_per_second", 0.0),
    )
    if msg.get("stopped"):
        line += " · " + t("chat.stopped")
    st.caption(line)


def show_retrieval(msg: dict[str, Any]) -> None:
    """The KB part of a reply: the rewritten question, then the numbered sources or "nothing found"."""
    if not msg.get("kb") or msg.get("sources") is None:
        return
    if msg.get("standalone"):
        st.caption(t("chat.standalone", q=msg["standalone"]))
    if msg["sources"]:
        show_sources(msg["sources"])
    else:
        st.info(t("chat.no_sources", kb=msg["kb"]), icon="ℹ️")


def show_message(msg: dict[str, Any]) -> None:
    with st.chat_message(msg["role"]):
        st.markdown(msg["content"] or ("…" if msg["role"] == "assistant" else ""))
        if msg["role"] != "assistant":
            return
        show_retrieval(msg)
        character.show_prompt(msg.get("prompt"))
        if msg.get("error"):
            st.error(t("chat.error", error=msg["error"]))
        show_meta(msg)


# -- replying -------------------------------------------------------------------------------------------


def _tracked(pieces: Iterator[str], pending: dict[str, Any]) -> Iterator[str]:
    """Pass pieces through, keeping the text so far in `pending` (survives an interrupted run)."""
    try:
        for piece in pieces:
            pending["content"] += piece
            yield piece
    finally:
        close = getattr(pieces, "close", None)
        if close:
            close()  # stops the generation thread and releases the runtime


def _stats(stream) -> dict[str, Any]:
    s = stream.stats
    return {
        "tokens": s.completion_tokens,
        "tokens_per_second": s.tokens_per_second,
        "first_token": s.time_to_first_token,
        "finish_reason": s.finish_reason,
    }


def _prepare(rt, settings: ChatSettings, prompt: str, earlier: list[dict[str, Any]]):
    """The engine's turn for `prompt` (retrieval and the follow-up rewrite happen here, before streaming)."""
    chat = engine(rt, with_kb=bool(settings.kb))
    try:
        with st.spinner(t("chat.retrieving")) if settings.kb else contextlib.nullcontext():
            turn = chat.prepare(
                prompt,
                character=settings.persona,
                history=earlier,
                user=settings.user,
                knowledge_base=settings.kb,
                k=settings.k,
                mode=settings.mode,
                condense=settings.condense,
                params=settings.params,
            )
    finally:
        chat.close()
    return chat, turn


def respond(rt, settings: ChatSettings, prompt: str) -> None:
    """Append the user's message, stream the reply into the page, then record it in the history."""
    hist = history()
    earlier = [{"role": m["role"], "content": m["content"]} for m in hist if m.get("content")]
    user = {"role": "user", "content": prompt}
    hist.append(user)
    show_message(user)
    started = time.perf_counter()
    pending: dict[str, Any] = {
        "role": "assistant",
        "content": "",
        "persona": settings.persona,
        "persona_label": persona_label(rt, settings.persona),
        "kb": settings.kb,
        "sources": None,
        "stats": {},
    }
    with st.chat_message("assistant"):
        stop_slot = st.empty()
        stop_slot.button(t("chat.stop"), icon=":material/stop_circle:", key="stop", type="tertiary")
        st.session_state["pending"] = pending
        try:
            chat, turn = _prepare(rt, settings, prompt, earlier)
            pending["sources"] = turn.sources
            pending["standalone"] = turn.question if turn.sources is not None and turn.question != prompt else ""
            pending["prompt"] = {
                "parts": turn.what_the_model_saw(),
                "tokens": turn.prompt_tokens,
                "budget": turn.budget,
                "fixed": turn.fixed_reply is not None,
            }
            show_retrieval(pending)
            stream = chat.stream(turn)
            tracked = _tracked(iter(stream), pending)
            try:
                st.write_stream(tracked)
            finally:
                tracked.close()  # closes the stream's iterator: stops the generation thread
            pending["stats"] = {"seconds": time.perf_counter() - started, **_stats(stream)}
        except Exception as exc:  # shown in the conversation, never swallowed
            log.exception("generation failed")
            pending["error"] = str(exc)
            st.error(t("chat.error", error=exc))
            pending["stats"] = {"seconds": time.perf_counter() - started}
        stop_slot.empty()
        character.show_prompt(pending.get("prompt"))
        show_meta(pending)
    st.session_state.pop("pending", None)
    hist.append(pending)


def render() -> None:
    st.title(t("chat.title"))
    recover_pending()
    try:
        with st.spinner(t("chat.loading")):
            rt = state.runtime()
    except Exception as exc:  # LoadError, ConfigError, invalid [llm] values: say what to do
        log.exception("model load failed")
        st.error(t("chat.load_failed", error=exc))
        st.info(t("chat.load_fix"))
        return
    info = rt.info
    st.caption(t("chat.model", model=info.model_id, device=info.device, dtype=info.dtype))
    if info.is_demo:
        st.warning(f"{t('chat.demo')}\n\n{info.hint}", icon="🧪")
    try:
        kb_page.ensure_sample_kb()
    except Exception as exc:  # an invalid [rag]/[app] setting must not take the chat down
        log.exception("sample knowledge base")
        st.error(t("config.error", error=exc))
    prompt = st.chat_input(t("chat.placeholder"))  # drawn at the bottom wherever it is called
    settings = sidebar(rt, sending=bool(prompt))
    hist = history()
    character.open_with_greeting(
        engine(rt), settings.persona, persona_label(rt, settings.persona), settings.user, settings.greeting, hist
    )
    if not hist and not prompt:
        st.caption(t("chat.empty"))
    for msg in hist:
        show_message(msg)
    if prompt:
        respond(rt, settings, prompt)
