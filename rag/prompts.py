"""Every piece of wording the answer chain sends to a model or shows as an answer. Config can override the two
templates (`[rag] prompt`, `[rag] condense_prompt`)."""

from __future__ import annotations

__all__ = ["NOT_ANSWERED", "ANSWER_PROMPT", "CONDENSE_PROMPT", "NOT_FOUND", "SOURCE_HEADER", "HUMAN_LABEL", "AI_LABEL"]

# The classic Chinese RAG prompt (LangChain / self-llm tutorials), plus the instruction to cite.
ANSWER_PROMPT = """使用以下上下文来回答最后的问题。如果你不知道答案，就说你不知道，不要试图编造答案。\
上下文中的每个片段都有编号，回答时在用到的内容后面用 [1]、[2] 这样的编号注明出处。尽量使答案简明扼要。

{context}

问题：{question}
有用的回答："""

CONDENSE_PROMPT = """根据下面的对话历史和后续问题，把后续问题改写成一个不看对话历史也能理解的独立问题。\
只输出改写后的问题，不要回答它。

对话历史：
{chat_history}

后续问题：{question}
独立问题："""

NOT_FOUND = "知识库中没有找到与这个问题相关的内容，因此无法根据知识库回答。"

SOURCE_HEADER = "[{n}] 来源：{source}（{location}）"

HUMAN_LABEL = "用户"
AI_LABEL = "助手"

# What a generated answer says when the passages do not answer (the demo model learned the first; the answer
# prompt asks real models for the second): such a reply is not grounded (`rolechat ask --json`).
NOT_ANSWERED = ("资料中没有提到", "我不知道", "不知道答案", "无法根据知识库回答", "没有找到与这个问题相关")
