"""Both backends (in-process `Runtime`, server-backed `RemoteRuntime`) offer the whole `Backend` surface, with
its parameters, so a caller written against `Backend` runs on either. (That live instances pass
`isinstance(rt, Backend)` is checked in tests/test_llm_remote.py, which has both loaded.)"""

from __future__ import annotations

import inspect

import pytest

from rolechat.llm import Backend, Runtime, load_runtime
from rolechat.llm.remote import RemoteRuntime

METHODS = sorted(
    n for n, v in vars(Backend).items() if not n.startswith("_") and (callable(v) or isinstance(v, classmethod))
)
ABSTRACT = ["_generate", "load", "logits", "reload_personas", "reply_loss"]
ATTRIBUTES = sorted(Backend.__annotations__)


def parameters(function) -> list[tuple[str, object]]:
    """Names, kinds and defaults: what a caller can rely on."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_the_protocol_names_what_callers_use():
    for name in ("load", "stream", "chat", "prompt_ids", "reply_loss", "manifest", "persona_names", "count_tokens"):
        assert name in METHODS
    assert {"cfg", "info", "tokenizer", "format", "parallel_generations"} <= set(ATTRIBUTES)


@pytest.mark.parametrize("backend", [Runtime, RemoteRuntime])
@pytest.mark.parametrize("name", METHODS)
def test_each_backend_implements_every_method_with_the_surfaces_parameters(backend, name):
    assert issubclass(backend, Backend) and not inspect.isabstract(backend)
    method = getattr(backend, name, None)
    assert callable(method), f"{backend.__name__} lacks {name}"
    assert parameters(method) == parameters(getattr(Backend, name)), f"{backend.__name__}.{name}"


def test_a_backend_missing_a_method_is_not_a_backend():
    class Partial:
        def stream(self, messages, persona=None, params=None, persona_system=True): ...

    assert not isinstance(Partial(), Backend)

    class Unfinished(Backend):  # the shared half alone: no way to load or generate
        pass

    assert sorted(Backend.__abstractmethods__) == ABSTRACT
    with pytest.raises(TypeError, match="abstract"):
        Unfinished(None, None, None, None, None, device="cpu", dtype="float32")


def test_load_runtime_returns_a_backend(tiny_qwen2):
    from rolechat.llm import LLMConfig

    rt = load_runtime(LLMConfig(model=str(tiny_qwen2)))
    assert isinstance(rt, Backend) and isinstance(rt, Runtime)
    assert rt.count_tokens("你好") == len(rt.tokenizer.encode("你好", add_special_tokens=False))
