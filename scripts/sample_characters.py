"""Rebuild the sample characters the demo model offers (llm/demo/personas/<name>/) from their cards.

The cards in examples/characters/*.json are the source; each becomes a prompt-only persona folder
(persona.json with the card and its rendered system prompt, avatar.png drawn from the name), exactly as
`rolechat character import` writes one. tests/test_characters.py checks the folders match the cards.

.venv/bin/python scripts/sample_characters.py
"""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CARDS = ROOT / "examples" / "characters"


def main() -> None:
    from rolechat.conversation.cardfile import placeholder_avatar, read_card
    from rolechat.conversation.characters import save_character
    from rolechat.llm.demo import SAMPLE_PERSONAS_DIR

    for card in sorted(CARDS.glob("*.json")):
        character = read_card(card)
        buffer = io.BytesIO()
        placeholder_avatar(character.name, (200, 300)).save(buffer, format="PNG", optimize=True)
        shutil.rmtree(SAMPLE_PERSONAS_DIR / card.stem, ignore_errors=True)
        folder = save_character(character, card.stem, root=SAMPLE_PERSONAS_DIR, avatar=buffer.getvalue())
        print(f"{card.relative_to(ROOT)} -> {folder.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
