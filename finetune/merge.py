"""Export a persona as a plain model: base + adapter merged, with the tokenizer and a persona chat template.

The merged folder loads with `AutoModelForCausalLM` alone (vLLM, llama.cpp conversion, other tools). Its
chat template puts the persona's system prompt first whenever a conversation has none, and its
generation config stops on the template's end-of-turn tokens. A quantized base cannot be merged into
full-precision weights, so that is refused.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from rolechat import settings as rc
from rolechat.llm.personas import PersonaManifest, discover

__all__ = ["MergeError", "persona_template", "merge_persona"]

log = logging.getLogger(__name__)


class MergeError(RuntimeError):
    """The persona cannot be merged; the message says why."""


def persona_template(template: str, system: str) -> str:
    """`template` with `system` as the default system message (used when the first message isn't one)."""
    if not system:
        return template
    literal = json.dumps(system, ensure_ascii=False)
    return (
        "{%- if not messages or messages[0]['role'] != 'system' -%}"
        "{%- set messages = [{'role': 'system', 'content': " + literal + "}] + messages -%}"
        "{%- endif -%}" + template
    )


def _find(persona: str, roots: list[Path]) -> Path:
    for entry in discover(roots):
        if entry.name == persona:
            if not entry.ok:
                raise MergeError(f"persona {persona!r} is unusable: {entry.error}")
            return entry.path
    raise MergeError(f"persona {persona!r} not found in {', '.join(str(r) for r in roots)}")


def _base_source(manifest: PersonaManifest, llm_cfg: Any) -> str:
    from rolechat.llm.demo import DEMO_MODEL_ID, demo_model_path
    from rolechat.llm.loader import resolve_model

    if llm_cfg.model:
        return resolve_model(llm_cfg.model).source
    if manifest.base_model == DEMO_MODEL_ID:
        return str(demo_model_path())
    return resolve_model(manifest.base_model).source


def merge_persona(persona: str, out: str | Path, llm_cfg: Any = None, *, overwrite: bool = False) -> Path:
    """Write base + `persona`'s adapter as one full-precision model folder at `out`."""
    from rolechat.llm.config import LLMConfig

    llm_cfg = llm_cfg or LLMConfig()
    if llm_cfg.quantization != "none":
        raise MergeError(
            f"llm.quantization = {llm_cfg.quantization!r}: merging needs the full-precision base "
            'weights; run merge with llm.quantization = "none" (a 4/8-bit base can\'t be merged '
            "into full-precision weights)"
        )
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise MergeError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    folder = _find(persona, [rc.personas_dir(), *map(Path, llm_cfg.persona_dirs)])
    manifest = PersonaManifest.load(folder)
    source = _base_source(manifest, llm_cfg)

    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from rolechat.llm.loader import fingerprint
    from rolechat.llm.templates import resolve_format, stop_token_ids

    base_cfg = AutoConfig.from_pretrained(source, trust_remote_code=llm_cfg.trust_remote_code)
    if getattr(base_cfg, "quantization_config", None):
        raise MergeError(
            f"{source} is a quantized checkpoint ({base_cfg.quantization_config.get('quant_method', '?')}"
            "); merging needs the full-precision base model"
        )
    if manifest.base_fingerprint and fingerprint(base_cfg) != manifest.base_fingerprint:
        raise MergeError(
            f"persona {persona!r} was trained on {manifest.base_model!r}; {source} has a different "
            "architecture (set llm.model to the persona's base)"
        )
    dtype = getattr(base_cfg, "dtype", None) or getattr(base_cfg, "torch_dtype", None) or torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=llm_cfg.trust_remote_code)
    base = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, trust_remote_code=llm_cfg.trust_remote_code)
    merged = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    fmt = resolve_format(tokenizer, manifest.template or "auto")
    template = fmt.chat_template or tokenizer.chat_template
    if not isinstance(template, str):
        raise MergeError(f"{source}: the tokenizer has several named chat templates; rolechat expects one")
    tokenizer.chat_template = persona_template(template, manifest.system_prompt)
    stops = stop_token_ids(tokenizer, fmt, merged.generation_config)
    if stops:
        merged.generation_config.eos_token_id = stops if len(stops) > 1 else stops[0]
    staging = out.with_name(f".{out.name}.merging")
    shutil.rmtree(staging, ignore_errors=True)
    merged.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    (staging / "rolechat_persona.json").write_text(
        (folder / "persona.json").read_text(encoding="utf-8"), encoding="utf-8"
    )
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(out)
    log.info("merged persona %s into %s", persona, out)
    return out
