"""Property tests (hypothesis) of every reader of user files on random and nested input: a card, a lorebook
and a document either read or fail with the reader's own error (which names the file), within a time bound,
and an import writes nothing outside ROLECHAT_HOME."""

from __future__ import annotations

import base64
import io
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolechat.conversation.cardfile import read_card, read_lorebook
from rolechat.conversation.lorebook import CardError, Lorebook
from rolechat.conversation.patterns import ScanLimits
from rolechat.conversation.worldinfo import activate
from rolechat.rag.loaders import SUPPORTED, LoadError, load_file

FUZZ = settings(
    max_examples=40,
    deadline=None,  # bounds are asserted below, generously: a slow shared machine must not make them flaky
    database=None,  # nothing written beside the tests
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
BOUND_S = 10.0  # no single file may take longer than this to read (or to fail)

# JSON values nested a few levels, the shape of a card's extensions or a document's records
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
# keys as cards write them: words, comma lists, /patterns/flags (some that backtrack), junk
keys = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["长安", "a, b", "/(a+)+$/", "/(a|aa)+$/i", "/[unclosed/", "/x{2,}/s", "(x+x+)+y", ""]),
    json_values,
)
entries = st.fixed_dictionaries(
    {},
    optional={
        "keys": st.lists(keys, max_size=3) | keys,
        "secondary_keys": st.lists(keys, max_size=3),
        "content": st.text(max_size=30) | json_values,
        "selective": st.booleans() | json_values,
        "constant": st.booleans(),
        "use_regex": st.booleans() | json_values,
        "insertion_order": st.integers() | st.floats() | json_values,
        "position": st.sampled_from(["before_char", "after_char", 0, 1, 7, "x"]),
        "extensions": json_values,
    },
)
books = st.fixed_dictionaries(
    {"entries": st.lists(entries, max_size=5) | json_values},
    optional={"scan_depth": json_values, "token_budget": json_values, "recursive_scanning": json_values},
)
cards = st.fixed_dictionaries(
    {"spec": st.sampled_from(["chara_card_v2", "chara_card_v3", "other"]), "data": st.fixed_dictionaries({})},
).flatmap(
    lambda card: st.fixed_dictionaries(
        {
            "spec": st.just(card["spec"]),
            "data": st.fixed_dictionaries(
                {"name": st.text(max_size=10) | json_values},
                optional={
                    "description": st.text(max_size=30) | json_values,
                    "alternate_greetings": st.lists(st.text(max_size=5)) | json_values,
                    "extensions": json_values,
                    "character_book": books | json_values,
                    "tags": json_values,
                },
            ),
        }
    )
)


def nested(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "list" else '{"a": ' * depth + "1" + "}" * depth


def bounded(read, *args):
    """read(*args), asserting it took less than BOUND_S whatever it did."""
    start = time.perf_counter()
    try:
        return read(*args)
    finally:
        assert time.perf_counter() - start < BOUND_S


def card_file(folder: Path, name: str, payload: bytes) -> Path:
    path = folder / name
    suffix = path.suffix
    if suffix == ".png":
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("chara", base64.b64encode(payload).decode("ascii"))
        Image.new("RGB", (2, 2)).save(path, pnginfo=info)
    elif suffix == ".charx":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("card.json", payload)
    else:
        path.write_bytes(payload)
    return path


@FUZZ
@given(card=cards | json_values, suffix=st.sampled_from([".json", ".png", ".charx"]))
def test_a_card_file_reads_or_fails_with_a_card_error(tmp_path, card, suffix):
    path = card_file(tmp_path, f"card{suffix}", json.dumps(card, ensure_ascii=False).encode("utf-8"))
    try:
        character = bounded(read_card, path)
    except CardError as exc:
        assert str(exc).startswith(path.name)
        return
    book = character.character_book
    if book is not None:  # what reads also activates, within the scan's bounds, and never raises
        limits = ScanLimits(regex_timeout=0.05, scan_seconds=1.0, max_checks=1000)
        bounded(lambda: activate(book, ["a" * 40 + "!", "长安"], len, limits=limits))
    character.to_card("v3")  # and writes back


@FUZZ
@given(
    depth=st.integers(100, 5000), kind=st.sampled_from(["list", "object"]), suffix=st.sampled_from([".json", ".png"])
)
def test_a_deeply_nested_card_is_a_card_error(tmp_path, depth, kind, suffix):
    text = '{"spec": "chara_card_v2", "data": {"name": "深", "extensions": ' + nested(depth, kind) + "}}"
    path = card_file(tmp_path, f"deep{suffix}", text.encode())
    with pytest.raises(CardError, match="nested deeper than 100 levels"):
        bounded(read_card, path)
    with pytest.raises(CardError, match="nested deeper than 100 levels"):
        bounded(read_lorebook, path)


@FUZZ
@given(book=books | json_values, world_info=st.booleans(), messages=st.lists(st.text(max_size=60), max_size=3))
def test_a_lorebook_reads_or_fails_and_a_read_one_always_activates(tmp_path, book, world_info, messages):
    if world_info and isinstance(book, dict) and isinstance(book.get("entries"), list):
        book = {**book, "entries": {str(i): e for i, e in enumerate(book["entries"])}}  # SillyTavern's shape
    path = card_file(tmp_path, "book.json", json.dumps(book, ensure_ascii=False).encode("utf-8"))
    try:
        read = bounded(read_lorebook, path)
    except CardError as exc:
        assert str(exc).startswith("book.json")
        return
    assert isinstance(read, Lorebook)
    limits = ScanLimits(regex_timeout=0.05, scan_seconds=1.0, max_checks=1000)
    bounded(lambda: activate(read, messages, len, limits=limits, notices=[]))


@FUZZ
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".json", ".png", ".charx"]))
def test_random_bytes_as_a_card_are_a_card_error(tmp_path, data, suffix):
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(data)
    with pytest.raises(CardError):
        bounded(read_card, path)


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


documents = st.one_of(
    st.binary(max_size=3000),
    st.text(max_size=500).map(lambda t: t.encode("utf-8")),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.tuples(st.integers(10, 5000), st.sampled_from(["list", "object"])).map(lambda d: nested(*d).encode()),
    st.integers(10, 3000).map(lambda d: ("<div>" * d + "深" + "</div>" * d).encode()),
    st.binary(max_size=2000).map(lambda b: b"%PDF-1.4\n" + b),
    st.dictionaries(
        st.sampled_from(["[Content_Types].xml", "word/document.xml", "_rels/.rels", "x"]), st.binary(max_size=200)
    ).map(zip_of),
)


@FUZZ
@given(data=documents, suffix=st.sampled_from(sorted(SUPPORTED)))
def test_a_document_reads_or_fails_with_a_load_error(tmp_path, data, suffix):
    path = tmp_path / f"doc{suffix}"
    path.write_bytes(data)
    try:
        loaded, _ = bounded(load_file, path)
    except LoadError as exc:
        assert str(exc)
        return
    assert any(block.text.strip() for block in loaded.blocks)


_WRITES: list[str] | None = None  # paths written while an import is watched (None: not watching)


def _audit(event: str, args: tuple) -> None:
    if _WRITES is None:
        return
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1] or "", args[2] or 0
        if any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            _WRITES.append(os.fsdecode(args[0]))
    elif event in ("os.rename", "os.replace", "os.symlink", "os.link"):
        _WRITES.extend(os.fsdecode(a) for a in args[:2])
    elif event in ("os.mkdir", "os.remove", "os.rmdir") and (args[-1] is None or os.path.isabs(args[0])):
        _WRITES.append(os.fsdecode(args[0]))  # (a relative path with a dir_fd: shutil.rmtree within a folder)


@FUZZ
@given(card=cards, name=st.text(min_size=1, max_size=30), suffix=st.sampled_from([".json", ".png"]))
def test_an_import_writes_nothing_outside_rolechat_home(tmp_path, card, name, suffix):
    """Whatever the card and its upload's file name (`../../x.png`, NUL bytes, ...), every file the import
    opens for writing, creates, renames or removes, even for a moment, lies in $ROLECHAT_HOME."""
    import sys

    from rolechat import settings
    from rolechat.conversation.characters import import_card

    global _WRITES
    if not getattr(sys, "_rolechat_import_audit", False):  # an audit hook stays for the process: add it once
        sys.addaudithook(_audit)
        sys._rolechat_import_audit = True
    home = settings.home()
    payload = card_file(Path(tempfile.mkdtemp(dir=tmp_path)), f"c{suffix}", json.dumps(card).encode()).read_bytes()
    _WRITES = []
    try:
        bounded(lambda: import_card(payload, name + suffix, overwrite=True))
    except (CardError, FileExistsError, ValueError, OSError):
        pass
    finally:
        written, _WRITES = _WRITES, None
    outside = [p for p in written if not Path(os.path.abspath(p)).is_relative_to(home)]
    assert outside == []
