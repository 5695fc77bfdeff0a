"""SentencePiece's precompiled normalization map ("precompiled_charsmap"), built from a code-point table.

`tokenizers`' `Precompiled` normalizer reads the format SentencePiece writes: a little-endian uint32 giving
the size in bytes of a darts-clone double-array trie over the UTF-8 bytes of each source string, the trie's
32-bit units, then the replacement strings, each closed by a NUL; a key's trie value is the offset of its
replacement. rolechat builds one to give the transformers copy of the bundled e5 model exactly the
normalization its 4-bit file records (`rolechat/encoder.py`). The unit layout (label, has-leaf bit, offset with its
"shifted" flag, values with the top bit set) is darts-clone's, as decoded by the `spm_precompiled` crate
`tokenizers` uses.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

__all__ = ["build_charsmap"]

_MAX_OFFSET = 1 << 21  # offsets at or above this need darts-clone's shifted form; a small map never does


class _Node:
    __slots__ = ("children", "value")

    def __init__(self) -> None:
        self.children: dict[int, _Node] = {}
        self.value: int | None = None


def _trie(keys: Mapping[bytes, int]) -> _Node:
    root = _Node()
    for key, value in keys.items():
        if not key or 0 in key:
            raise ValueError(f"charsmap keys must be non-empty and free of NUL bytes, got {key!r}")
        node = root
        for byte in key:
            node = node.children.setdefault(byte, _Node())
        node.value = value
    return root


def _double_array(root: _Node) -> list[int]:
    """Place the trie: a node at position p with base b keeps its child labelled c at b ^ c and, when a key
    ends there, its value at b ^ 0. Bases are unique (else a missing label could read another node's child).
    Candidate bases are tried by putting the node's first label on each free slot in turn."""
    units: list[int] = [0] * 512
    used = bytearray(512)
    used[0] = 1
    bases: set[int] = set()
    queue: list[tuple[int, _Node]] = [(0, root)]
    first_free = 1
    while queue:
        pos, node = queue.pop()
        labels = sorted(node.children)
        if node.value is not None:
            labels.insert(0, 0)
        if not labels:
            continue
        while first_free < len(used) and used[first_free]:
            first_free += 1
        slot = first_free
        while True:
            base = slot ^ labels[0]
            top = max(base ^ c for c in labels) + 1
            if top > len(used):
                grow = top - len(used) + 512
                used.extend(bytes(grow))
                units.extend([0] * grow)
            if base not in bases and not any(used[base ^ c] for c in labels):
                break
            slot += 1
            while slot < len(used) and used[slot]:
                slot += 1
        offset = pos ^ base
        if offset >= _MAX_OFFSET:
            raise ValueError("charsmap too large for the unshifted offset form")
        bases.add(base)
        units[pos] |= offset << 10
        if node.value is not None:
            units[pos] |= 1 << 8  # has a leaf
            units[base] = node.value | (1 << 31)
            used[base] = 1
        for c in labels:
            if c:
                units[base ^ c] = c  # the label; the child's own offset is or-ed in when it is placed
                used[base ^ c] = 1
                queue.append((base ^ c, node.children[c]))
    # every lookup from a base reads base ^ label for any byte label: keep the array that long
    size = max(base | 0xFF for base in bases) + 1 if bases else 256
    return units[:size] + [0] * (size - len(units))


def build_charsmap(table: Mapping[str, str]) -> bytes:
    """The precompiled_charsmap for `table` (source string -> replacement, "" to delete)."""
    blob = bytearray()
    offsets: dict[str, int] = {}
    keys: dict[bytes, int] = {}
    for source, replacement in sorted(table.items()):
        if replacement not in offsets:
            offsets[replacement] = len(blob)
            blob += replacement.encode("utf-8") + b"\0"
        keys[source.encode("utf-8")] = offsets[replacement]
    units = _double_array(_trie(keys))
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)
