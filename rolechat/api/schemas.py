"""Request bodies, validated before anything reaches the engine.

Every string is checked to be encodable (JSON may carry lone surrogates, which no tokenizer takes), every
float to be finite (Python's JSON parser reads NaN and Infinity), every integer to fit what it feeds.
Unknown fields are refused by name, as OpenAI does; known OpenAI parameters that rolechat does not
implement are accepted only at their neutral value (`n: 1`, `logprobs: false`, ...) and otherwise refused
with a 400 naming them (`unsupported()`). To extend a request, add a field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, field_validator

__all__ = [
    "AuthorsNoteOptions",
    "ChatMessage",
    "ChatRequest",
    "HistoryMessage",
    "RolechatOptions",
    "SearchRequest",
    "StreamOptions",
    "TutorialRequest",
    "Text",
]


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text holds invalid Unicode (a lone surrogate such as \\ud800)") from None
    return value


Text = Annotated[str, AfterValidator(_encodable)]
# strict: "yes" is not a boolean, "0.7" not a number, 1.5 not an integer (as in OpenAI's API)
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # what torch.manual_seed accepts
GREEDY_BELOW = 1e-5  # logits / 1e-300 overflow to inf: a temperature this small means greedy


def _temperature(value: float | None) -> float | None:
    return 0.0 if value is not None and value < GREEDY_BELOW else value


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[TextPart] | None = None
    name: Text | None = Field(default=None, max_length=256)

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: Bool = False
    include_obfuscation: Bool | None = None  # accepted: rolechat never pads chunks


# OpenAI parameters rolechat does not implement, with the values that mean "not used".
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (None, 1),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "response_format": (None, {"type": "text"}),
    "tools": (None, []),
    "tool_choice": (None, "none", "auto"),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "parallel_tool_calls": (None, True, False),
    "logit_bias": (None, {}),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "reasoning_effort": (None,),
    "web_search_options": (None,),
    "verbosity": (None,),
}


class AuthorsNoteOptions(BaseModel):
    """SillyTavern's Author's Note for this chat (`rolechat.authors_note`)."""

    model_config = ConfigDict(extra="forbid")
    text: Text = Field(default="", max_length=20000)
    depth: Int = Field(default=4, ge=0, le=1000)
    role: Literal["system", "user", "assistant"] = "system"
    position: Literal["in_chat", "after_story", "before_story"] = "in_chat"
    interval: Int = Field(default=1, ge=0, le=1000)


class SummaryOptions(BaseModel):
    """The summary of a long chat's oldest messages (`rolechat.summary`), as the previous response returned it:
    `covers` is how many of the request's earlier user and assistant messages it stands for."""

    model_config = ConfigDict(extra="forbid")
    text: Text = Field(default="", max_length=20000)
    covers: Int = Field(default=0, ge=0, le=1_000_000)


class RolechatOptions(BaseModel):
    """rolechat's own request extension (field `rolechat`): who the user is in the conversation ({{user}} in
    cards), whether the response shows "what the model saw" (`prompt_parts`), what the chat adds around its
    characters (`lorebooks` from the library, a `scenario` override, an `authors_note`, and `lore_state`, the
    timed lore effects the previous response returned, and `summary`, the summary of older turns it returned),
    and a multi-character scene: `scene` names its
    characters (personas) or `scene_name` a saved scene, `speaker` who replies (default: the next by `order`);
    the assistant messages of the history carry the persona that said them in `name`."""

    model_config = ConfigDict(extra="forbid")
    user_name: Text = Field(default="", max_length=100)
    user_description: Text = Field(default="", max_length=4000)
    show_prompt: Bool = False
    lorebooks: list[Text] = Field(default_factory=list, max_length=32)
    scenario: Text = Field(default="", max_length=20000)
    authors_note: AuthorsNoteOptions | None = None
    lore_state: dict[str, dict[str, dict[str, Any]]] | None = None
    scene: list[Text] | None = Field(default=None, min_length=2, max_length=16)
    scene_name: Text | None = Field(default=None, max_length=256)
    speaker: Text | None = Field(default=None, max_length=256)
    order: Literal["natural", "list", "manual", "round-robin"] | None = None
    summary: SummaryOptions | None = None


class ChatRequest(BaseModel):
    """`POST /v1/chat/completions`: OpenAI's fields, plus `knowledge_base` (and `k`, `answer_mode`) to answer
    from one."""

    model_config = ConfigDict(extra="forbid")

    model: Text = Field(default="base", max_length=256)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: Bool = False
    stream_options: StreamOptions | None = None
    temperature: Float | None = Field(default=None, ge=0, le=2)
    top_p: Float | None = Field(default=None, gt=0, le=1)
    max_tokens: Int | None = Field(default=None, ge=1, le=1_000_000)
    max_completion_tokens: Int | None = Field(default=None, ge=1, le=1_000_000)
    stop: Text | list[Text] | None = None
    seed: Int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    knowledge_base: Text | None = Field(default=None, max_length=100)
    k: Int | None = Field(default=None, ge=1, le=50)
    answer_mode: Literal["auto", "generate", "extract"] | None = None  # with knowledge_base: rag.answer_mode
    rolechat: RolechatOptions | None = None
    # accepted and ignored, as they change nothing about the reply
    user: Text | None = Field(default=None, max_length=256)
    metadata: dict[str, Text] | None = None
    store: Bool | None = None
    service_tier: Text | None = None
    prompt_cache_key: Text | None = None
    safety_identifier: Text | None = None
    # refused unless neutral (see unsupported())
    n: Any = None
    logprobs: Any = None
    top_logprobs: Any = None
    response_format: Any = None
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    parallel_tool_calls: Any = None
    logit_bias: Any = None
    presence_penalty: Any = None
    frequency_penalty: Any = None
    modalities: Any = None
    audio: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    web_search_options: Any = None
    verbosity: Any = None

    _greedy = field_validator("temperature")(_temperature)

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 16:
            raise ValueError("at most 16 stop strings")
        return value

    def unsupported(self) -> tuple[str, Any] | None:
        """The first parameter set to something rolechat does not implement, with its value."""
        for name, neutral in _NEUTRAL.items():
            value = getattr(self, name)
            if not any(value == ok and type(value) is type(ok) or value is ok for ok in neutral):
                return name, value
        if self.stream_options is not None and not self.stream:
            return "stream_options", self.stream_options
        return None

    def stop_list(self) -> list[str] | None:
        return [self.stop] if isinstance(self.stop, str) else self.stop

    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class HistoryMessage(BaseModel):
    """ChatGLM3's history item: `{"role", "content", "metadata"}` (metadata is ignored)."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: Text


# ChatGLM/ChatGLM2 send [[question, answer], ...]; ChatGLM3 sends role dicts.
History = list[Annotated[list[Text], Field(min_length=2, max_length=2)]] | list[HistoryMessage]


class TutorialRequest(BaseModel):
    """`POST /`: the body of the classic ChatGLM FastAPI tutorial, plus `model`/`persona`."""

    model_config = ConfigDict(extra="ignore")  # the tutorial's clients send what they like

    prompt: Text = Field(min_length=1)
    history: History | None = None
    max_length: Int | None = Field(default=None, ge=1, le=1_000_000)
    top_p: Float | None = Field(default=None, gt=0, le=1)
    temperature: Float | None = Field(default=None, ge=0, le=2)
    model: Text | None = Field(default=None, max_length=256)
    persona: Text | None = Field(default=None, max_length=256)

    _greedy = field_validator("temperature")(_temperature)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Text = Field(min_length=1, max_length=4000)
    k: Int | None = Field(default=None, ge=1, le=50)
    mode: Literal["dense", "bm25", "hybrid"] | None = None
