"""The runtime's front door: `load_runtime` picks the backend a config asks for, `describe` lists personas.

    llm.backend = "local" (default)  ->  llm.local.Runtime: the model in this process
    llm.backend = "openai"           ->  llm.remote.RemoteRuntime: an OpenAI-compatible server

Both implement `llm.backend.Backend`; callers use that surface and never ask which one they got. `Runtime`,
`RuntimeInfo` and `persona_roots` are re-exported here for the callers that import them from this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from rolechat.llm.backend import Backend, RuntimeInfo, persona_roots
from rolechat.llm.config import LLMConfig
from rolechat.llm.local import Runtime
from rolechat.llm.personas import PersonaEntry

__all__ = ["Runtime", "RuntimeInfo", "describe", "load_runtime", "persona_roots"]


def load_runtime(cfg: LLMConfig | None = None, **overrides: object) -> Backend:
    """Load the runtime for `cfg` (defaults when None), with keyword overrides of its fields.

    The runtime never reads the config file or the environment itself: entry points build the LLMConfig
    with `rolechat.settings.build(LLMConfig, "llm", file_data, flags)` (file < environment < flags).
    """
    cfg = replace(cfg or LLMConfig(), **overrides) if overrides else (cfg or LLMConfig())
    if cfg.backend == "openai":
        from rolechat.llm.remote import RemoteRuntime

        return RemoteRuntime.load(cfg)
    return Runtime.load(cfg)


def describe(entries: Iterable[PersonaEntry]) -> list[dict[str, str | bool | None]]:
    """Plain dicts for listings (CLI, API, app)."""
    rows = []
    for e in entries:
        m = e.manifest
        rows.append(
            {
                "name": e.name,
                "display_name": m.display_name if m else e.name,
                "system_prompt": m.system_prompt if m else "",
                "base_model": m.base_model if m else "",
                "kind": "character" if m and m.card else "adapter",
                "adapter": e.has_adapter,
                "path": str(e.path),
                "ok": e.ok,
                "error": e.error,
            }
        )
    return rows
