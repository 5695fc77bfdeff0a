"""The Streamlit pages of `app.py`: chat, knowledge bases, training, and what they share.

Nothing below `llm`, `rag` or `finetune` imports this package. Pages import `llm` and `rag`; training
runs `rolechat train` as a separate process and only reads its progress file.
"""

__all__ = ["access", "chat", "i18n", "kb", "password", "state", "train"]
