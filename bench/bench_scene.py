"""A scene turn against a single-character turn: does speaking in a scene cost more than the adapter switch?

Two random LoRA adapters (r 8, all linear layers) are written to a temporary ROLECHAT_HOME and loaded into
the one base model. Three kinds of turn, interleaved, each prepared by the engine and generated greedily
(at most `--tokens`), timed end to end (medians), with their prompt lengths:

- solo:          `Engine.prepare` + generation, always persona p0 (no switch);
- solo switched: the same, alternating p0 and p1 (an adapter switch every turn);
- scene:         `Engine.prepare_scene` + generation, p0 and p1 taking turns in a two-character scene with a
                 growing history (an adapter switch every turn, named turns, stop strings at the other name).

    .venv/bin/python bench/bench_scene.py                  # the built-in demo model, 20 turns of each
    .venv/bin/python bench/bench_scene.py --turns 40 --tokens 32
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LINES = ["今天去哪里喝茶？", "城东的茶馆不错。", "那里的说书人很有名。", "我们明天一起去吧。"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="", help="base model folder (default: the demo model)")
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=16)
    args = ap.parse_args()
    os.environ["ROLECHAT_HOME"] = tempfile.mkdtemp(prefix="rolechat-bench-")

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from rolechat import settings
    from rolechat.conversation import Engine, UserPersona
    from rolechat.llm import LLMConfig, PersonaManifest, Runtime, fingerprint, resolve_model

    torch.set_num_threads(1)
    resolved = resolve_model(args.model or None, "")
    names = ["p0", "p1"]
    for i, name in enumerate(names):
        torch.manual_seed(i)
        base = AutoModelForCausalLM.from_pretrained(resolved.source, dtype=torch.float32)
        pm = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False))
        out = settings.personas_dir() / name
        pm.save_pretrained(out)
        PersonaManifest(
            name=name, display_name=f"角色{i}", base_model=resolved.model_id, base_fingerprint=fingerprint(base.config)
        ).save(out)
    rt = Runtime.load(LLMConfig(model=args.model))
    engine = Engine(rt)
    user = UserPersona("小明")
    params = {"temperature": 0.0, "max_new_tokens": args.tokens}

    prompts: dict[str, list[int]] = {}

    def timed(fn) -> tuple[float, int]:
        start = time.perf_counter()
        tokens = fn()
        return time.perf_counter() - start, tokens

    def solo(persona: str, n: int) -> tuple[float, int]:
        history = [{"role": "user" if i % 2 == 0 else "assistant", "content": LINES[i % 4]} for i in range(n)]

        def run() -> int:
            turn = engine.prepare(LINES[n % 4], character=persona, history=history, user=user, params=params)
            prompts.setdefault(f"solo-{persona == 'p0' and n % 2 == 0}", []).append(turn.prompt_tokens)
            stream = engine.stream(turn)
            stream.join()
            return stream.stats.completion_tokens

        return timed(run)

    scene_history: list[dict] = [{"role": "user", "content": LINES[0]}]

    def scene(speaker: str) -> tuple[float, int]:
        def run() -> int:
            turn = engine.prepare_scene(
                "", characters=names, speaker=speaker, history=scene_history, user=user, params=params
            )
            prompts.setdefault("scene", []).append(turn.prompt_tokens)
            stream = engine.stream(turn)
            text = stream.join()
            scene_history.append({"role": "assistant", "content": text or "……", "name": speaker})
            return stream.stats.completion_tokens

        return timed(run)

    solo("p0", 0)  # warm-up
    runs: dict[str, list[tuple[float, int]]] = {
        "solo (p0 only)": [],
        "solo, switching p0/p1": [],
        "scene (p0 and p1 take turns)": [],
    }
    for i in range(args.turns):  # interleaved, so a busy machine slows the three kinds alike
        runs["solo (p0 only)"].append(solo("p0", i))
        runs["solo, switching p0/p1"].append(solo(names[i % 2], i))
        runs["scene (p0 and p1 take turns)"].append(scene(names[i % 2]))
    # the engine's own share: preparing the same scene history as a solo turn and as a scene turn (no generation)
    solo_history = [{"role": m["role"], "content": m["content"]} for m in scene_history]
    prep: dict[str, list[float]] = {"prepare (solo, same history)": [], "prepare_scene": []}
    for i in range(args.turns * 5):
        start = time.perf_counter()
        engine.prepare(LINES[0], character="p0", history=solo_history, user=user, params=params)
        prep["prepare (solo, same history)"].append(time.perf_counter() - start)
        start = time.perf_counter()
        engine.prepare_scene(LINES[0], characters=names, speaker=names[i % 2], history=scene_history, user=user)
        prep["prepare_scene"].append(time.perf_counter() - start)
    print(f"model {rt.info.model_id} · {args.turns} turns each · max_new_tokens {args.tokens}")
    print(
        f"prompt tokens (mean): solo {statistics.mean(prompts['solo-True'] + prompts['solo-False']):.0f}, "
        f"scene {statistics.mean(prompts['scene']):.0f}"
    )
    print("| turn | p50 per turn | p50 per generated token | tokens per reply (mean) |")
    print("|---|---|---|---|")
    for label, rows in runs.items():
        seconds = [s for s, _ in rows]
        per_token = [s / max(t, 1) for s, t in rows]
        mean_tokens = statistics.mean(t for _, t in rows)
        print(
            f"| {label} | {statistics.median(seconds) * 1000:.1f} ms | "
            f"{statistics.median(per_token) * 1000:.2f} ms | {mean_tokens:.1f} |"
        )
    for label, values in prep.items():
        print(
            f"{label}: p50 {statistics.median(values) * 1000:.2f} ms "
            f"({len(values)} turns, {len(scene_history)} messages)"
        )


if __name__ == "__main__":
    main()
