"""Which Chinese characters are common: counted over jieba's dictionary (MIT licensed), read from the installed
package when a build or a data script runs, never copied into the repository.

`common_chars(n)` is the n most frequent CJK characters weighted by the dictionary's word counts. The demo
tokenizer gives them their own token (`build.py --add-chars`), and `scripts/demo_facts.py` builds its invented
names from words made only of them, so every character the copy-from-context data uses is one token.
"""

from __future__ import annotations

import functools
import importlib.util
from collections import Counter
from pathlib import Path

__all__ = ["common_chars", "is_han", "jieba_entries"]


def is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


def _jieba_dict() -> Path:
    spec = importlib.util.find_spec("jieba")
    if spec is None or not spec.origin:
        raise RuntimeError("jieba is not installed; it is needed for its word list (pip install jieba)")
    return Path(spec.origin).parent / "dict.txt"


@functools.lru_cache(maxsize=1)
def jieba_entries() -> list[tuple[str, int, str]]:
    """(word, count, part of speech) for every line of jieba's dictionary."""
    out = []
    for line in _jieba_dict().read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            out.append((parts[0], int(parts[1]), parts[2]))
    return out


@functools.lru_cache(maxsize=4)
def common_chars(n: int = 3500) -> str:
    """The n most frequent CJK characters, weighted by jieba's word counts (ties in dictionary order)."""
    counts: Counter[str] = Counter()
    for word, freq, _ in jieba_entries():
        for ch in word:
            if is_han(ch):
                counts[ch] += freq
    return "".join(ch for ch, _ in counts.most_common(n))
