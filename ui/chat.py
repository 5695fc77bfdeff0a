"""The chat page: pick a persona or character and (optionally) a knowledge base, then talk, with streamed replies.

Every prompt is assembled by `rolechat.conversation.Engine`, as in the CLI and the API. History lives in
`st.session_state["history"]`: one dict per message (`role`, `content`, and for replies `persona`, `kb`,
`sources`, `stats`, `stopped`, `prompt`: what the model saw). A chat with a character opens with its greeting
(`greeting`: True). Settings are read from the sidebar on every run, so a persona or knowledge-base switch
applies to the next message; nothing is reloaded.

With two or more characters picked under "scene", the chat is a scene (SillyTavern's group chat): it opens
with each character's group greeting, and every reply comes from one speaker, with its own card and adapter
(`Engine.prepare_scene`); "who speaks next" is natural order (the characters named in the last message, then
the talkative ones), list order (everyone, in order), round-robin, or one chosen character (manual). Scene
replies carry `name` (the speaker's persona) and show under the speaker's name. Scenes answer without a
knowledge base.

The chat's own lorebooks, scenario override and author's note (`ui.world`) apply to a solo chat and a scene
alike; the timed lore state each turn leaves is kept with the chat.

Chats are saved, listed, resumed, exported and edited by `ui.conversations`.

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

from ui import character, conversations, state, world
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
    scene: list[str] = field(default_factory=list)  # two or more personas: a scene
    next_speaker: str = "natural"  # natural, list, round-robin or one of the scene's personas (manual)
    setting: Any = None  # the chat's lorebooks, scenario override, author's note, timed lore state


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
        if pending.get("swipes"):  # a regeneration: the partial text is the newest swipe
            pending["swipes"][pending["swipe"]] = pending["content"]
        history().append(pending)
        conversations.persist()


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


def _scene_picker(rt) -> tuple[list[str], str]:
    """Sidebar: the scene's characters (two or more make a scene) and who speaks next."""
    names = [n for n in rt.persona_names() if n != "base"]
    if len(names) < 2:
        st.session_state["scene"] = []
        return [], "natural"
    st.session_state["scene"] = [n for n in st.session_state.get("scene") or [] if n in names]
    labels = {n: persona_label(rt, n) for n in names}
    scene = st.multiselect(
        t("side.scene"), names, key="scene", format_func=labels.__getitem__, help=t("side.scene_help")
    )
    if len(scene) < 2:
        return [], "natural"
    options = ["natural", "list", "round-robin", *scene]
    if st.session_state.get("next_speaker") not in options:
        st.session_state["next_speaker"] = "natural"
    order_labels = {
        "natural": t("side.order_natural"),
        "list": t("side.order_list"),
        "round-robin": t("side.order_rr"),
        **{p: t("side.order_pick", name=label) for p, label in labels.items()},
    }
    speaker = st.selectbox(t("side.next_speaker"), options, key="next_speaker", format_func=order_labels.__getitem__)
    return list(scene), speaker


def sidebar(rt, sending: bool = False) -> ChatSettings:
    """The sidebar's settings; `sending`: a message is on its way in this run (the greeting is then fixed)."""
    with st.sidebar:
        conversations.sidebar({n: persona_label(rt, n) for n in rt.persona_names()})
        persona = _persona_picker(rt)
        scene, next_speaker = _scene_picker(rt)
        setting = world.setting_inputs()
        character.import_card(rt)
        user = character.user_inputs()
        greeting = character.greeting_picker(engine(rt), persona, user, history(), sending)
        kb, k, mode, condense = _kb_picker(rt)
        params = _generation_settings(rt)
        _tone_picker()
        st.button(t("side.clear"), width="stretch", type="secondary", on_click=conversations.new_chat)
    return ChatSettings(
        persona=persona,
        kb=None if scene else kb,
        k=k,
        mode=mode,
        condense=condense,
        params=params,
        user=user,
        greeting=greeting,
        scene=scene,
        next_speaker=next_speaker,
        setting=setting,
    )


def _tone_picker() -> None:
    """Optional tone check: a classifier (`rolechat train-classifier`) that labels every new reply."""
    from rolechat.finetune.classifier import discover_classifiers

    names = [e.name for e in discover_classifiers() if e.ok]
    if names:
        st.selectbox(
            t("side.tone"), [None, *names], key="tone_clf", help=t("side.tone_help"), format_func=lambda n: n or "—"
        )


def _tone(text: str) -> dict[str, Any] | None:
    """The tone classifier's label for a reply (None when no classifier is picked or it cannot run)."""
    name = st.session_state.get("tone_clf")
    if not name or not text.strip():
        return None
    from rolechat.finetune.classifier import MANIFEST, classifier_path
    from ui.classify import load_classifier

    try:
        path = classifier_path(name)
        clf = load_classifier(str(path), (path / MANIFEST).stat().st_mtime, _device())
        pred = clf.predict([text])[0]
    except Exception as exc:  # a broken classifier must not break the chat
        log.warning("tone check with %s failed: %s", name, exc)
        return None
    return {"classifier": name, "label": pred.label, "score": pred.score}


def _device() -> str:
    from rolechat import settings as rc
    from rolechat.llm.config import LLMConfig

    return rc.build(LLMConfig, "llm", state.file_data()).device


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
    if msg.get("answer_mode"):
        who = f"{who} · {t('chat.mode_' + msg['answer_mode'])}"
    line = t(
        "chat.meta",
        who=who,
        seconds=stats.get("seconds", 0.0),
        tokens=stats.get("completion_tokens", stats.get("tokens", 0)),  # "tokens" in chats saved before 12/2026
        tps=stats.get("tokens_per_second", 0.0),
    )
    if msg.get("stopped"):
        line += " · " + t("chat.stopped")
    if msg.get("tone"):
        line += " · " + t("chat.tone", label=msg["tone"]["label"], score=msg["tone"]["score"])
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


def speaker_of(msg: dict[str, Any]) -> str:
    """Who a message shows under: user, assistant, or a scene speaker's name (its own avatar)."""
    if msg["role"] == "assistant" and msg.get("name"):
        return msg.get("persona_label") or msg["name"]
    return msg["role"]


_shown: dict[str, Any] = {}  # persona -> its regex scripts, for this run (render() clears it)


def shown_text(msg: dict[str, Any], depth: int = 0) -> str:
    """A message as the page shows it: the display-only regex scripts of its character applied."""
    persona = msg.get("name") or msg.get("persona") or "base"
    if persona not in _shown:
        try:
            chat = engine(state.runtime())
            _shown[persona] = chat.scripts(chat.character(None if persona == "base" else persona))
        except Exception as exc:  # a broken card or script file must not take the page down
            log.warning("regex scripts of %s: %s", persona, exc)
            _shown[persona] = None
    scripts = _shown[persona]
    if scripts is None or not scripts.shows(msg["role"]):
        return msg["content"]
    return scripts.display(msg["content"], msg["role"], depth)


def show_message(msg: dict[str, Any], index: int | None = None, last_reply: bool = False) -> None:
    depth = len(history()) - 1 - index if index is not None else 0
    with st.chat_message(speaker_of(msg)):
        st.markdown(shown_text(msg, depth) or ("…" if msg["role"] == "assistant" else ""))
        if msg["role"] == "assistant":
            show_retrieval(msg)
            character.show_prompt(msg.get("prompt"))
            if msg.get("error"):
                st.error(t("chat.error", error=msg["error"]))
            show_meta(msg)
        if index is not None:
            conversations.message_actions(index, msg, last_reply)


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


def _session(rt, settings: ChatSettings):
    """The chat shown as a `conversation.Session`: its history is the page's own list, its summary the saved
    chat's; a new engine per run, so indexing done elsewhere is always seen."""
    from rolechat.conversation.session import Session, Summary

    scene = list(settings.scene)
    return Session(
        engine(rt, with_kb=bool(settings.kb)),
        persona=settings.persona,
        characters=scene,
        order=settings.next_speaker if settings.next_speaker not in scene else "natural",
        user=settings.user,
        setting=settings.setting,
        knowledge_base=settings.kb,
        k=settings.k,
        retrieval=settings.mode,
        condense=settings.condense,
        params=settings.params,
        history=history(),
        summary=Summary.of(conversations.saved_summary(), len(history())),
    )


def _generate(rt, settings: ChatSettings, pending: dict[str, Any], reply) -> dict[str, Any]:
    """Stream one reply into the page, recording it in `pending` as it comes; `pending`, complete and recorded
    in the history (a failure is shown in it)."""
    started = time.perf_counter()
    with st.chat_message(speaker_of(pending)):
        stop_slot = st.empty()
        stop_slot.button(t("chat.stop"), icon=":material/stop_circle:", key=f"stop_{len(history())}", type="tertiary")
        st.session_state["pending"] = pending
        try:
            with st.spinner(t("chat.retrieving")) if settings.kb else contextlib.nullcontext():
                turn = reply.turn  # retrieval and the follow-up rewrite happen here, before streaming
            _show_turn(reply.session.engine, turn, pending)
            stream = reply.stream
            tracked = _tracked(iter(stream), pending)
            try:
                st.write_stream(tracked)
            finally:
                tracked.close()  # closes the stream's iterator: stops the generation thread
            pending["stats"] = {"seconds": time.perf_counter() - started, **stream.stats.as_dict()}
            pending["tone"] = _tone(pending["content"])
        except Exception as exc:  # shown in the conversation, never swallowed
            log.exception("generation failed")
            pending["error"] = str(exc)
            st.error(t("chat.error", error=exc))
            pending["stats"] = {"seconds": time.perf_counter() - started}
        stop_slot.empty()
        character.show_prompt(pending.get("prompt"))
        show_meta(pending)
    reply.finish(pending["content"], entry=pending)
    if pending.get("swipes"):
        pending["swipes"][pending["swipe"]] = pending["content"]
    st.session_state.pop("pending", None)
    return pending


def _show_turn(chat, turn, pending: dict[str, Any]) -> None:
    """What the page keeps of a prepared turn: the timed lore state, the sources, what the model saw."""
    st.session_state["lore_state"] = turn.lore_state
    pending["sources"] = turn.sources
    asked = next((m["content"] for m in reversed(history()) if m["role"] == "user"), "")
    pending["standalone"] = turn.question if turn.sources is not None and turn.question != asked else ""
    pending["prompt"] = {
        "parts": turn.what_the_model_saw(),
        "tokens": turn.prompt_tokens,
        "budget": turn.budget,
        "fixed": turn.fixed_reply is not None,
        "rendered": chat.rendered(turn),
    }
    if turn.answer_mode:
        pending["answer_mode"], pending["grounded"] = turn.answer_mode, turn.grounded
    show_retrieval(pending)


def _reply_to(rt, settings: ChatSettings, reply) -> dict[str, Any]:
    """A new, empty entry for `reply` (a scene line under its speaker's name)."""
    persona = reply.speaker or settings.persona
    msg = {
        "role": "assistant",
        "content": "",
        "persona": persona,
        "persona_label": reply.name or persona_label(rt, persona),
        "kb": settings.kb,
        "sources": None,
        "stats": {},
    }
    if reply.speaker:
        msg["name"] = reply.speaker
    return msg


def _scene_names(rt, settings: ChatSettings) -> dict[str, str]:
    return engine(rt).scene_names(settings.scene)


def answer(rt, settings: ChatSettings, pick: str | None = None, pending: dict[str, Any] | None = None) -> None:
    """The session's answer to the chat so far, streamed into the page: a solo reply, or a scene's round (or
    `pick` alone); each reply saved as it completes, a long chat's dropped turns summarised in the background.
    `pending`: the entry a regenerated reply goes into (its swipes)."""
    import random

    session = _session(rt, settings)
    try:
        for reply in session.replies(pick, rng=random.Random()):
            entry = pending or _reply_to(rt, settings, reply)
            _generate(rt, settings, entry, reply)
            conversations.persist()
            job = session.summary_job(reply)
            if job is not None:
                conversations.summarise_later(job)
    finally:
        session.engine.close()


def scene_round(rt, settings: ChatSettings) -> None:
    """The characters' answer to the scene so far: one round, or the one character picked to speak next."""
    answer(rt, settings, pick=settings.next_speaker if settings.next_speaker in settings.scene else None)


def respond(rt, settings: ChatSettings, prompt: str) -> None:
    """Append the user's message (saved at once), stream the reply (or a scene's round) into the page, then
    record it in the history."""
    user = {"role": "user", "content": prompt}
    history().append(user)
    conversations.persist()
    show_message(user)
    if settings.scene:
        scene_round(rt, settings)
    else:
        answer(rt, settings)


def regenerate(rt, settings: ChatSettings) -> None:
    """Generate the last reply again, keeping every earlier text as a swipe."""
    hist = history()
    if not hist or hist[-1]["role"] != "assistant" or hist[-1].get("greeting"):
        return
    old = hist.pop()
    swipes = list(old.get("swipes") or [old["content"]])
    pending = {**old, "content": "", "swipes": [*swipes, ""], "swipe": len(swipes), "stats": {}, "error": None}
    pending.pop("stopped", None)
    speaker = old.get("name")
    if speaker:
        if speaker not in settings.scene:  # the scene changed since: answer in the speaker's scene as saved
            settings = ChatSettings(**{**settings.__dict__, "scene": sorted({speaker, *settings.scene})})
    else:
        if not hist or hist[-1]["role"] != "user":
            hist.append(old)
            return
        persona = old.get("persona") or settings.persona
        settings = ChatSettings(**{**settings.__dict__, "persona": persona, "kb": old.get("kb"), "scene": []})
    answer(rt, settings, pick=speaker, pending=pending)
    conversations.persist()


def _scene_opening(rt, settings: ChatSettings) -> list[dict[str, Any]]:
    """A new scene opens with each character's group greeting (SillyTavern's group chat)."""
    names = _scene_names(rt, settings)
    try:
        opening = engine(rt).scene_greetings(settings.scene, settings.user)
    except ValueError as exc:  # a broken card must not take the page down: it opens without greetings
        log.warning("scene greetings: %s", exc)
        return []
    return [{**m, "greeting": True, "persona": m["name"], "persona_label": names[m["name"]]} for m in opening]


def render() -> None:
    st.title(t("chat.title"))
    _shown.clear()
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
    if settings.scene:
        if not character.started(hist):
            hist[:] = _scene_opening(rt, settings)
    else:
        character.open_with_greeting(
            engine(rt), settings.persona, persona_label(rt, settings.persona), settings.user, settings.greeting, hist
        )
    if not hist and not prompt:
        st.caption(t("chat.empty"))
    regen = st.session_state.pop(conversations.REGENERATE, False) and not prompt
    last = max((i for i, m in enumerate(hist) if m["role"] == "assistant"), default=-1)
    shown = hist[:-1] if regen and last == len(hist) - 1 else hist
    for i, msg in enumerate(shown):
        show_message(msg, i, last_reply=i == last == len(hist) - 1 and not prompt)
    if regen:
        regenerate(rt, settings)
    elif prompt:
        respond(rt, settings, prompt)
    elif settings.scene and character.started(hist) and st.button(t("chat.scene_continue"), key="scene_continue"):
        scene_round(rt, settings)
    else:
        return
    st.rerun()  # draw the new reply with its actions (regenerate, swipes, edit)
