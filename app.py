"""rolechat's Streamlit app: `streamlit run app.py`.

The composition root: sets the offline environment, the page config and the language switch, lets
`ui.access.gate` decide whether this session may see any page (loopback or logged in), and routes to the
pages (chat, knowledge bases, training, text classification) that live in the `ui` package.
"""

from __future__ import annotations

import streamlit as st

from rolechat.settings import set_process_env

set_process_env()

from ui import access, state  # noqa: E402
from ui.i18n import LANGUAGES, t  # noqa: E402

st.set_page_config(page_title="rolechat", page_icon="💬", layout="centered")
state.keep_widget_state()


def language_switch() -> None:
    with st.sidebar:
        st.session_state.setdefault("lang", "zh")
        st.radio(t("lang.label"), list(LANGUAGES), key="lang", format_func=LANGUAGES.get, horizontal=True)


if not access.gate():  # served beyond loopback without a password, or not logged in yet: no page at all
    language_switch()
    st.stop()

pages = [
    st.Page("ui/pages/chat.py", title=t("nav.chat"), icon=":material/chat:", default=True),
    st.Page("ui/pages/kb.py", title=t("nav.kb"), icon=":material/library_books:"),
    st.Page("ui/pages/train.py", title=t("nav.train"), icon=":material/model_training:"),
    st.Page("ui/pages/classify.py", title=t("nav.classify"), icon=":material/label:"),
]
page = st.navigation(pages)
language_switch()
page.run()
