"""Refresh docs/screenshots/*.png from the real app in headless Chromium.

Everything is real: the default model (the built-in demo model unless --model says otherwise), the sample
`knowledge/` folder indexed on first run with the configured embedder, and a persona trained from
examples/personas/cat.json with `rolechat train`. It runs in a fresh temporary ROLECHAT_HOME.

    .venv/bin/python bench/screenshots.py                      # -> docs/screenshots/
    .venv/bin/python bench/screenshots.py --model /models/Qwen3-1.7B --steps 200
    .venv/bin/python bench/screenshots.py --only-character     # just the character flow (character-*.png)
    .venv/bin/python bench/screenshots.py --only-scene         # just the scene flow (scene*.png)

The character flow imports the sample card examples/characters/suwan.json as a PNG from the chat page,
shows its greeting, and sends a message that triggers a lorebook entry, with "what the model saw" open.
The scene flow picks the persona 喵喵 (miaomiao: its own adapter) and the character 苏晚 (suwan: the sample card,
on the base model) for a scene, sends one message that both answer in turn, then reloads the page, where the
chat is listed in the sidebar, and resumes it. With the demo model, --only-scene uses the sample persona
miaomiao shipped with it; with --model it trains one (--steps) unless the home already has it.

Needs /usr/bin/chromium and a CJK font (apt-get install chromium fonts-wqy-microhei).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser_driver import (  # noqa: E402
    missing_browser,
    run_character_flow,
    run_flow,
    run_scene_flow,
    start_server,
)

CAT_SYSTEM = "你是一只名叫喵喵的小猫，说话可爱，每句话都以“喵~”结尾。"
SCENE_LABELS = ("喵喵 (miaomiao)", "苏晚 (suwan)")  # as the scene picker shows them: display name (folder name)
SCENE_MESSAGE = "苏晚，喵喵，你们好！今天想聊点什么？"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="", help="base model folder (default: what the app resolves: the demo model)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    ap.add_argument("--steps", type=int, default=60, help="training steps for the sample persona (0: no persona)")
    ap.add_argument("--question", default="云雾山茶园的门票多少钱？")
    ap.add_argument("--temperature", default="0", help="sampling temperature of the replies (default greedy)")
    ap.add_argument("--home", type=Path, help="reuse this ROLECHAT_HOME (kept; its persona is not retrained)")
    ap.add_argument("--keep-home", action="store_true", help="keep the temporary ROLECHAT_HOME")
    ap.add_argument("--only-character", action="store_true", help="only the character flow (character-*.png)")
    ap.add_argument("--only-scene", action="store_true", help="only the scene flow (scene*.png)")
    args = ap.parse_args()
    reason = missing_browser()
    if reason:
        sys.exit(f"cannot take screenshots: {reason}")

    home = args.home or Path(tempfile.mkdtemp(prefix="rolechat-shots-"))
    env = {"ROLECHAT_HOME": str(home), "ROLECHAT_LLM_TEMPERATURE": args.temperature}
    if args.model:
        env["ROLECHAT_LLM_MODEL"] = args.model
    if args.only_scene:
        scene_shots(env, home, args.out, steps=args.steps, sample_personas=not args.model)
        finish(home, keep=bool(args.keep_home or args.home))
        return
    character_shots(env, home, args.out)
    if args.only_character:
        finish(home, keep=bool(args.keep_home or args.home))
        return
    persona = "喵喵 (miaomiao)" if args.steps else None
    if args.steps:
        train_persona(env, home, args.steps)

    started = time.perf_counter()
    result = in_app(
        env,
        home / "streamlit.log",
        run_flow,
        home / "shots",
        question=args.question,
        persona_label=persona,
        follow_up="你好呀，你是谁？",
        search="采茶体验",
        lint=True,
        viewport={"width": 1280, "height": 1400},
    )
    print(f"browser flow took {time.perf_counter() - started:.0f} s (first page load indexes the sample KB)")
    keep_shots(result.shots.values(), args.out)
    for answer in result.answers:
        print("---\n" + answer)
    scene_shots(env, home, args.out, steps=args.steps, sample_personas=not args.model)
    finish(home, keep=bool(args.keep_home or args.home))


def in_app(env: dict[str, str], log: Path, flow, *args, **kwargs):
    """Start the app, run one browser flow against it, stop it; the app's log tail on failure or exceptions."""
    server = start_server(env, log, timeout=120)
    try:
        result = flow(server.url, *args, timeout_ms=600_000, **kwargs)
    except Exception:
        print(server.log_tail(), file=sys.stderr)
        raise
    finally:
        server.stop()
    if result.exceptions:
        sys.exit(f"the app showed {result.exceptions} exception(s); see {server.log}")
    return result


def keep_shots(paths, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        shutil.copy2(path, out / path.name)
        print(out / path.name)


def finish(home: Path, keep: bool) -> None:
    if keep:
        print(f"home kept: {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)


def train_persona(env: dict[str, str], home: Path, steps: int) -> None:
    """The sample persona miaomiao, trained from examples/personas/cat.json with `rolechat train` (once per home)."""
    if (home / "personas" / "miaomiao" / "persona.json").is_file():
        return
    started = time.perf_counter()
    cmd = [
        sys.executable,
        "-m",
        "rolechat",
        "train",
        "--data",
        str(ROOT / "examples/personas/cat.json"),
        "--persona",
        "miaomiao",
        "--display-name",
        "喵喵",
        "--system",
        CAT_SYSTEM,
        "--max-steps",
        str(steps),
    ]
    subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, check=True)
    print(f"trained the sample persona in {time.perf_counter() - started:.0f} s", flush=True)


def character_shots(env: dict[str, str], home: Path, out: Path) -> None:
    """Import the sample card as a PNG in the app, see its greeting, trigger a lorebook entry (西市)."""
    import json

    from rolechat.conversation import Character, write_card

    sample = json.loads((ROOT / "examples" / "characters" / "suwan.json").read_text(encoding="utf-8"))
    card = write_card(Character.from_dict(sample), home / "苏晚.png")
    result = in_app(
        {**env, "ROLECHAT_APP_SAMPLE_KB": "false"},
        home / "streamlit-character.log",
        run_character_flow,
        home / "shots",
        card=card,
        greeting="这位客官来得巧",
        message="西市有什么好玩的？",
        lore="西市是胡商云集之地",
    )
    keep_shots(result.shots.values(), out)
    print("---\n" + result.reply)


def scene_shots(env: dict[str, str], home: Path, out: Path, *, steps: int, sample_personas: bool) -> None:
    """A two-character scene: 喵喵 (an adapter) and 苏晚 (a card) each reply; the reloaded page lists the chat."""
    if not (sample_personas or (home / "personas" / "miaomiao" / "persona.json").is_file()):
        if not steps:
            sys.exit("the scene needs the persona miaomiao: give --steps > 0 to train it")
        train_persona(env, home, steps)
    if not (home / "personas" / "suwan").is_dir():  # under its own folder name, whatever the model
        card = ROOT / "examples" / "characters" / "suwan.json"
        cmd = [sys.executable, "-m", "rolechat", "character", "import", str(card), "--name", "suwan"]
        subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)
    result = in_app(
        {**env, "ROLECHAT_APP_SAMPLE_KB": "false"},
        home / "streamlit-scene.log",
        run_scene_flow,
        home / "scene-shots",
        SCENE_LABELS,
        SCENE_MESSAGE,
        viewport={"width": 1280, "height": 1100},
    )
    keep_shots(result.shots.values(), out)
    print("---\n" + "\n---\n".join(result.replies))


if __name__ == "__main__":
    main()
