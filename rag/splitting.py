"""Chinese-aware chunking measured in embedder tokens.

Text is cut into sentences at Chinese and Western sentence punctuation and line breaks; a sentence
longer than a chunk is cut at clause punctuation (，、：), then by length. Sentences are packed greedily
into chunks of at most `chunk_size` tokens, repeating up to `chunk_overlap` tokens of trailing
sentences at the start of the next chunk. Markdown headings close a section: chunks never straddle
two sections and each chunk starts with its heading path ("安装 > 环境配置"), so a chunk about
"配置" still says what it configures. Lengths are counted with the embedder's own tokenizer, and every
chunk is checked against the embedder's limit after packing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rolechat.rag.loaders import LoadedFile

__all__ = ["Chunk", "split_file", "TokenCounter", "SPLITTER_VERSION"]

SPLITTER_VERSION = "zh-sent-1"

TokenCounter = Callable[[Sequence[str]], list[int]]

_SENTENCE = re.compile(r"(?<=[。！？!?；;…])(?![”’」』）\)\]】\"'。！？!?；;…])|(?<=\n)|(?<=[.?!]) (?=[A-Z\"'“])")
_CLAUSE = re.compile(r"(?<=[，、：,:])")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass
class Chunk:
    text: str  # what is embedded and searched: heading path + body
    location: str
    headings: str  # "H1 > H2", "" outside any heading


@dataclass
class _Unit:
    text: str
    location: str
    tokens: int = 0


def _sections(loaded: LoadedFile) -> list[tuple[str, list[_Unit]]]:
    """(heading path, lines-as-units) per section, in document order."""
    sections: list[tuple[str, list[_Unit]]] = []
    for block in loaded.blocks:
        if not loaded.markdown:
            sections.append((block.heading, [_Unit(block.text, block.location)]))
            continue
        stack: list[str] = []
        current: list[_Unit] = []
        in_fence = False
        line_based = block.location.startswith("line ")
        for offset, line in enumerate(block.text.split("\n")):
            location = f"line {block.first_line + offset}" if line_based else block.location
            if _FENCE.match(line):
                in_fence = not in_fence
            heading = None if in_fence else _HEADING.match(line)
            if heading:
                if any(u.text.strip() for u in current):
                    sections.append((" > ".join(stack), current))
                current = []
                level = len(heading.group(1))
                title = re.sub(r"[*_`]+", "", heading.group(2)).strip()
                stack = stack[: level - 1] + [""] * max(0, level - 1 - len(stack)) + [title]
                stack = [h for h in stack if h] if level == 1 else stack
                continue
            current.append(_Unit(line + "\n", location))
        if any(u.text.strip() for u in current):
            sections.append((" > ".join(h for h in stack if h), current))
    return sections


def _sentences(units: list[_Unit]) -> list[_Unit]:
    out = []
    for unit in units:
        for piece in _SENTENCE.split(unit.text):
            if piece:
                out.append(_Unit(piece, unit.location))
    # fold whitespace-only pieces into their predecessor so they never stand alone
    merged: list[_Unit] = []
    for unit in out:
        if merged and not unit.text.strip():
            merged[-1].text += unit.text
        else:
            merged.append(unit)
    return merged


def _counted(units: list[_Unit], count: TokenCounter) -> list[_Unit]:
    for unit, n in zip(units, count([u.text for u in units])):
        unit.tokens = n
    return units


def _hard_split(unit: _Unit, budget: int, count: TokenCounter) -> list[_Unit]:
    """Cut a too-long sentence at clause punctuation, then by length, until every piece fits."""
    pieces = [_Unit(p, unit.location) for p in _CLAUSE.split(unit.text) if p]
    if len(pieces) == 1:
        return _cut(unit, budget, count)
    return [x for p in _counted(pieces, count) for x in (_cut(p, budget, count) if p.tokens > budget else [p])]


def _cut(unit: _Unit, budget: int, count: TokenCounter) -> list[_Unit]:
    if unit.tokens <= budget or len(unit.text) < 2:
        return [unit]
    step = max(1, min(len(unit.text) // 2, int(len(unit.text) * budget / max(unit.tokens, 1) * 0.9)))
    pieces = _counted([_Unit(unit.text[i : i + step], unit.location) for i in range(0, len(unit.text), step)], count)
    return [x for piece in pieces for x in _cut(piece, budget, count)]


def _pack(units: list[_Unit], budget: int, overlap: int) -> list[list[_Unit]]:
    chunks: list[list[_Unit]] = []
    current: list[_Unit] = []
    size = 0
    for unit in units:
        if current and size + unit.tokens > budget:
            chunks.append(current)
            carry: list[_Unit] = []
            carried = 0
            for prev in reversed(current):
                if carried + prev.tokens > overlap or carried + prev.tokens + unit.tokens > budget:
                    break
                carry.insert(0, prev)
                carried += prev.tokens
            current, size = carry, carried
        current.append(unit)
        size += unit.tokens
    if current and any(u.text.strip() for u in current):
        chunks.append(current)
    return chunks


def split_file(
    loaded: LoadedFile, count: TokenCounter, chunk_size: int, chunk_overlap: int, max_tokens: int | None = None
) -> list[Chunk]:
    """Split a loaded file into chunks of at most `chunk_size` tokens (and never above `max_tokens`)."""
    limit = min(chunk_size, max_tokens or chunk_size)
    sections = [(headings, _sentences(lines)) for headings, lines in _sections(loaded)]
    # one tokenizer call for every sentence and heading of the file: per-call overhead dominates otherwise
    prefixes = sorted({h for h, _ in sections if h})
    flat = [u for _, units in sections for u in units]
    counts = count([f"{h}\n" for h in prefixes] + [u.text for u in flat])
    prefix_tokens = dict(zip(prefixes, counts[: len(prefixes)]))
    for unit, n in zip(flat, counts[len(prefixes) :]):
        unit.tokens = n
    result: list[tuple[Chunk, bool]] = []
    for headings, units in sections:
        prefix = f"{headings}\n" if headings else ""
        used = prefix_tokens.get(headings, 0)
        if used > limit // 3:  # absurdly long headings: keep the end of the last one only
            prefix = headings.split(" > ")[-1][-(limit // 3) :] + "\n"
            used = count([prefix])[0]
        budget = max(8, limit - used)
        fitted = [x for u in units for x in (_hard_split(u, budget, count) if u.tokens > budget else [u])]
        for group in _pack(fitted, budget, chunk_overlap):
            body = "".join(u.text for u in group).strip()
            if body:
                # a sum of parts can only drift at the joins: re-count the chunks close to the limit
                near = used + sum(u.tokens for u in group) + len(group) > limit
                result.append((Chunk(prefix + body, group[0].location, headings), near))
    near = [i for i, (_, is_near) in enumerate(result) if is_near]
    over = {i for i, n in zip(near, count([result[i][0].text for i in near])) if n > limit}
    return [
        x for i, (chunk, _) in enumerate(result) for x in (_enforce([chunk], count, limit) if i in over else [chunk])
    ]


def _enforce(chunks: list[Chunk], count: TokenCounter, limit: int) -> list[Chunk]:
    """Tokenizing a concatenation can differ from the sum of its parts: re-check and halve offenders."""
    out = []
    for chunk, n in zip(chunks, count([c.text for c in chunks])):
        if n <= limit or len(chunk.text) < 2:
            out.append(chunk)
            continue
        half = len(chunk.text) // 2
        halves = [
            Chunk(chunk.text[:half], chunk.location, chunk.headings),
            Chunk(chunk.text[half:], chunk.location, chunk.headings),
        ]
        out.extend(_enforce(halves, count, limit))
    return out
