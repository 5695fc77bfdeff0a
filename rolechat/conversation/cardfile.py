"""Card and lorebook files: Character Card V1/V2/V3 JSON and PNG in and out, lorebooks standalone or embedded.

    char = read_card("凛.png")              # V1 flat JSON, V2/V3 JSON, a PNG with `ccv3` / `chara` text,
                                            # or a V3 .charx archive (card.json + assets)
    avatar = read_avatar("凛.png")          # the PNG's picture (bytes) without the card text, or None
    write_card(char, "out.png")             # PNG with both chunks (`chara` = V2, `ccv3` = V3), as SillyTavern
    write_card(char, "out.json", version="v3")
    book = read_lorebook("world.json")      # a card's character_book, a `lorebook_v3` file, a card
                                            # (its book), or SillyTavern's own world-info JSON
    write_lorebook(book, "book.json")       # a `lorebook_v3` file

PNG text chunks hold base64 of the UTF-8 JSON. When a PNG has both, `ccv3` wins (V3 spec, SillyTavern's reader).
Every error is a CardError naming the file and the field; nothing is returned half-read. What a file may cost
is bounded: its size (`chat.card_max_mb`, a CHARX archive's expanded size too), its JSON's nesting
(`rolechat.limits.MAX_DEPTH`) and its picture's pixels (Pillow's MAX_IMAGE_PIXELS).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rolechat.conversation.card import Character
from rolechat.conversation.fields import CardError, as_bool, as_number, as_str_list
from rolechat.conversation.lorebook import Lorebook, LoreEntry
from rolechat.limits import InputError, check_archive, load_json

__all__ = [
    "CardError",
    "placeholder_avatar",
    "read_avatar",
    "read_card",
    "read_lorebook",
    "write_card",
    "write_lorebook",
]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _limit(max_bytes: int | None) -> int:
    if max_bytes is not None:
        return max_bytes
    from rolechat.conversation.config import ConversationConfig

    return ConversationConfig().card_max_bytes


def _json(path: Path, text: str | bytes, where: str = "") -> Any:
    """Parsed JSON of a card file (or of a part of it: `where`), CardError naming the file for bad or deep JSON."""
    try:
        return load_json(text)
    except InputError as exc:
        raise CardError(f"{path.name}: {where}{exc}") from None


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CardError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise CardError(f"{path.name}: not UTF-8 text ({exc})") from None
    return _json(path, text)


@contextmanager
def _image(path: Path, source: Any = None):
    """An opened picture; a decompression bomb (more pixels than Pillow's MAX_IMAGE_PIXELS) is a CardError, not
    a warning nobody can act on."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(source if source is not None else path)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise CardError(f"{path.name}: the picture is too large to read ({exc})") from None
    with image:
        yield image


def _png_text(path: Path) -> dict[str, str]:
    """The PNG's text chunks, keys lower-cased."""
    from PIL import UnidentifiedImageError

    try:
        with _image(path) as image:
            if image.format != "PNG":
                raise CardError(f"{path.name}: not a PNG image")
            image.load()
            return {str(k).lower(): v for k, v in getattr(image, "text", {}).items() if isinstance(v, str)}
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, CardError):
            raise
        raise CardError(f"{path.name}: unreadable PNG ({exc})") from None


def _decode_chunk(path: Path, name: str, value: str) -> Any:
    raw = value.strip()
    try:
        text = base64.b64decode(raw, validate=False).decode("utf-8") if not raw.startswith("{") else raw
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise CardError(f"{path.name}: PNG text chunk {name!r} is not base64 of a JSON card ({exc})") from None
    return _json(path, text, f"PNG text chunk {name!r}: ")


_ZIP_SIGNATURE = b"PK\x03\x04"


def _charx_member(path: Path, member: str, max_bytes: int | None = None) -> bytes:
    import zipfile

    try:
        check_archive(path, _limit(max_bytes), "chat.card_max_mb")
    except InputError as exc:
        raise CardError(f"{path.name}: {exc}") from None
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read(archive.getinfo(member))
    except KeyError:
        raise CardError(f"{path.name}: CHARX archive has no {member}") from None
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError) as exc:  # RuntimeError: an encrypted member
        raise CardError(f"{path.name}: unreadable CHARX archive ({exc})") from None


def _charx_card(path: Path, max_bytes: int | None = None) -> Any:
    return _json(path, _charx_member(path, "card.json", max_bytes), "card.json: ")


def _signature(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(8)


def _card_dict(path: Path, max_bytes: int | None = None) -> Any:
    """The parsed card (or lorebook) object of a file, whatever its format; CardError naming the file."""
    if not path.is_file():
        raise CardError(f"{path}: file not found")
    limit = _limit(max_bytes)
    size = path.stat().st_size
    if size > limit:
        raise CardError(
            f"{path.name}: {size / 1e6:.1f} MB is larger than the limit of {limit / 1e6:g} MB (chat.card_max_mb)"
        )
    signature = _signature(path)
    if signature.startswith(_ZIP_SIGNATURE):  # CHARX (V3): a zip with card.json and the assets
        return _charx_card(path, limit)
    if signature == _PNG_SIGNATURE:
        chunks = _png_text(path)
        for name in ("ccv3", "chara"):
            if name in chunks:
                return _decode_chunk(path, name, chunks[name])
        raise CardError(f"{path.name}: PNG has no character card (no 'ccv3' or 'chara' text chunk)")
    if path.suffix.lower() in (".png", ".apng", ".webp", ".jpg", ".jpeg"):
        raise CardError(f"{path.name}: not a PNG image")
    return _read_json(path)


def read_card(path: str | Path, max_bytes: int | None = None) -> Character:
    """A character from a card file (JSON V1/V2/V3, PNG, or V3 CHARX). CardError names the file and the field.

    `max_bytes`: the largest file read (default: `chat.card_max_mb`'s default); nesting deeper than
    `rolechat.limits.MAX_DEPTH` is refused too."""
    path = Path(path)
    d = _card_dict(path, max_bytes)
    if isinstance(d, Mapping) and d.get("spec") == "lorebook_v3" or _looks_like_world_info(d):
        raise CardError(f"{path.name}: this is a lorebook, not a character card (import it as a lorebook)")
    try:
        return Character.from_dict(d)
    except CardError as exc:
        raise CardError(f"{path.name}: {exc}") from None


def read_avatar(path: str | Path) -> bytes | None:
    """The picture of a PNG card (or a CHARX card's main icon) as PNG bytes, without card text; None for JSON.

    A PNG card's picture is its own bytes with only the card's text chunks (`chara`, `ccv3`) taken out: every
    other chunk (colour profile, metadata, other tools' text) stays, and goes out again with an export."""
    path = Path(path)
    signature = _signature(path)
    if signature.startswith(_ZIP_SIGNATURE):
        member = _charx_icon(path)
        if member is None:
            return None
        source: Any = io.BytesIO(_charx_member(path, member))
    elif signature == _PNG_SIGNATURE:
        source = path
    else:
        return None
    try:
        with _image(path, source) as image:
            image.load()  # a picture that does not decode is refused here, not at export
            if image.format == "PNG" and source is path:
                return _without_card_chunks(path.read_bytes())
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")  # no pnginfo: the card chunks stay behind
            return buffer.getvalue()
    except (OSError, ValueError, SyntaxError) as exc:
        raise CardError(f"{path.name}: unreadable PNG ({exc})") from None


# PNG chunks are length, type, data, CRC; only the card's own text chunks are taken out or put in (as
# SillyTavern's character-card-parser.js does with png-chunks-extract): the rest of the file stays byte for byte.
_CARD_KEYWORDS = (b"chara", b"ccv3")


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, whole chunk bytes) of each chunk after the signature, up to IEND."""
    chunks, at = [], len(_PNG_SIGNATURE)
    while at + 12 <= len(data):
        kind, end = data[at + 4 : at + 8], at + 12 + int.from_bytes(data[at : at + 4], "big")
        chunks.append((kind, data[at:end]))
        at = end
        if kind == b"IEND":
            break
    return chunks


def _without_card_chunks(data: bytes) -> bytes:
    keep = [
        raw
        for kind, raw in _png_chunks(data)
        if not (kind in (b"tEXt", b"zTXt", b"iTXt") and raw[8:].split(b"\0", 1)[0].lower() in _CARD_KEYWORDS)
    ]
    return _PNG_SIGNATURE + b"".join(keep)


def _with_card_chunks(data: bytes, texts: list[tuple[str, str]]) -> bytes:
    """`data` (a PNG) without its card chunks, with `texts` as tEXt chunks just before IEND."""
    import zlib

    added = b""
    for keyword, text in texts:
        body = b"tEXt" + keyword.encode("latin-1") + b"\0" + text.encode("latin-1")
        added += (len(body) - 4).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    chunks = _png_chunks(_without_card_chunks(data))
    before = b"".join(raw for kind, raw in chunks if kind != b"IEND")
    end = b"".join(raw for kind, raw in chunks if kind == b"IEND")
    return _PNG_SIGNATURE + before + added + end


def _charx_icon(path: Path) -> str | None:
    """The archive member holding a CHARX card's main icon (`embeded://` asset), if any."""
    card = _charx_card(path)
    data = card.get("data") if isinstance(card, dict) else None
    assets = data.get("assets") if isinstance(data, dict) else None
    if not isinstance(assets, list):
        return None
    icons = [a for a in assets if isinstance(a, dict) and a.get("type") == "icon"]
    icons.sort(key=lambda a: a.get("name") != "main")
    for icon in icons:
        uri = str(icon.get("uri", ""))
        if uri.startswith("embeded://"):
            return uri[len("embeded://") :]
    return None


def placeholder_avatar(name: str, size: tuple[int, int] = (400, 600)) -> Any:
    """A simple avatar for a card without a picture: a symmetric 5x5 pattern in colours taken from the name."""
    from PIL import Image, ImageDraw

    digest = hashlib.sha256(name.encode("utf-8")).digest()
    hue = digest[0] / 255
    import colorsys

    back = tuple(int(c * 255) for c in colorsys.hls_to_rgb(hue, 0.90, 0.45))
    fore = tuple(int(c * 255) for c in colorsys.hls_to_rgb(hue, 0.45, 0.55))
    width, height = size
    image = Image.new("RGB", size, back)
    draw = ImageDraw.Draw(image)
    cell = min(width, height) * 0.8 / 5
    left, top = (width - cell * 5) / 2, (height - cell * 5) / 2
    for row in range(5):
        for col in range(3):
            if digest[1 + row * 3 + col] % 2:
                for c in {col, 4 - col}:
                    x, y = left + c * cell, top + row * cell
                    draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=fore)
    return image


def write_card(
    character: Character,
    path: str | Path,
    *,
    version: str | None = None,
    avatar: str | Path | bytes | None = None,
) -> Path:
    """Write a card: `.json` as `version` ("v2" or "v3"; default: the spec the card was read from); `.png` with
    both `chara` (V2) and `ccv3` (V3) text chunks on `avatar` (an image file or PNG bytes, its other chunks
    kept; a placeholder drawn from the name when None)."""
    path = Path(path)
    suffix = path.suffix.lower()
    version = version or ("v3" if character.spec == "chara_card_v3" else "v2")
    if suffix == ".json":
        text = json.dumps(character.to_card(version), ensure_ascii=False, indent=2) + "\n"
        _atomic_write(path, text.encode("utf-8"))
        return path
    if suffix != ".png":
        raise CardError(f"{path.name}: a card is written as .png or .json")
    texts = []
    for name, version_ in (("chara", "v2"), ("ccv3", "v3")):
        payload = json.dumps(character.to_card(version_), ensure_ascii=False).encode("utf-8")
        texts.append((name, base64.b64encode(payload).decode("ascii")))
    _atomic_write(path, _with_card_chunks(_png_bytes(character, avatar), texts))
    return path


def _png_bytes(character: Character, avatar: str | Path | bytes | None) -> bytes:
    """The picture as PNG bytes: a PNG avatar as it is (its other chunks kept), anything else re-encoded."""
    from PIL import Image

    if avatar is None:
        image = placeholder_avatar(character.name)
    else:
        raw = avatar if isinstance(avatar, bytes) else Path(avatar).read_bytes()
        if raw.startswith(_PNG_SIGNATURE) and any(kind == b"IEND" for kind, _ in _png_chunks(raw)):
            return raw
        try:
            image = Image.open(io.BytesIO(raw))
            image.load()
        except (OSError, ValueError) as exc:
            raise CardError(f"avatar: unreadable image ({exc})") from None
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        image = image.convert("RGBA")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


# -- lorebooks ------------------------------------------------------------------------------------------


def _looks_like_world_info(d: Any) -> bool:
    return isinstance(d, Mapping) and isinstance(d.get("entries"), Mapping) and "data" not in d


# SillyTavern world-info entry fields -> the card spec's entry fields
_ST_TOP = {
    "uid": "id",
    "comment": "comment",
    "content": "content",
    "constant": "constant",
    "selective": "selective",
}
# SillyTavern settings that go to the entry's `extensions`, under the names SillyTavern's own card export uses
_ST_EXT = {
    "selectiveLogic": "selectiveLogic",
    "useProbability": "useProbability",
    "excludeRecursion": "exclude_recursion",
    "preventRecursion": "prevent_recursion",
    "delayUntilRecursion": "delay_until_recursion",
    "displayIndex": "display_index",
    "scanDepth": "scan_depth",
    "matchWholeWords": "match_whole_words",
    "caseSensitive": "case_sensitive",
    "useGroupScoring": "use_group_scoring",
    "groupOverride": "group_override",
    "groupWeight": "group_weight",
    "automationId": "automation_id",
    "outletName": "outlet_name",
}


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _st_entry(key: str, d: Any, where: str) -> dict[str, Any]:
    """One SillyTavern world-info entry in the card spec's entry shape."""
    if not isinstance(d, Mapping):
        raise CardError(f"{where}: expected an object")
    entry: dict[str, Any] = {
        "keys": as_str_list(d.get("key"), f"{where}.key", split_commas=True),
        "secondary_keys": as_str_list(d.get("keysecondary"), f"{where}.keysecondary", split_commas=True),
        "insertion_order": as_number(d.get("order"), f"{where}.order", 100),
        "enabled": not as_bool(d.get("disable"), f"{where}.disable"),
    }
    if "uid" not in d:
        entry["id"] = int(key) if key.isdigit() else key
    position = as_number(d.get("position"), f"{where}.position", 0)
    entry["position"] = "before_char" if position == 0 else "after_char"
    ext: dict[str, Any] = dict(d["extensions"]) if isinstance(d.get("extensions"), Mapping) else {}
    ext["position"] = position
    for name, value in d.items():
        if name in ("key", "keysecondary", "order", "disable", "position", "extensions"):
            continue
        if name in _ST_TOP:
            entry[_ST_TOP[name]] = value
        else:
            ext[_ST_EXT.get(name, _snake(name))] = value
    if d.get("caseSensitive") is not None:
        entry["case_sensitive"] = d["caseSensitive"]
    entry["extensions"] = ext
    return entry


_BOOK_SETTINGS = ("name", "description", "scan_depth", "token_budget", "recursive_scanning", "extensions")


def _world_info(d: Mapping[str, Any], name: str) -> Lorebook:
    """SillyTavern's world-info file. The book's own settings come from its top level, else from
    `originalData` (the card book SillyTavern converted it from, which it keeps there)."""
    entries = [
        LoreEntry.from_dict(_st_entry(str(k), v, f"entries.{k}"), f"entries.{k}") for k, v in d["entries"].items()
    ]
    original = d.get("originalData") if isinstance(d.get("originalData"), Mapping) else {}
    settings = {k: d[k] if d.get(k) is not None else original.get(k) for k in _BOOK_SETTINGS}
    book = Lorebook.from_dict({**{k: v for k, v in settings.items() if v is not None}, "entries": []}, "world info")
    book.entries = entries
    book.name = book.name or name
    return book


def read_lorebook(path: str | Path, max_bytes: int | None = None) -> Lorebook:
    """A lorebook from a file: SillyTavern world info (`entries` keyed by id), a `lorebook_v3` file, a bare
    `character_book` object, or a character card (JSON or PNG) whose book is taken. Limits as `read_card`."""
    path = Path(path)
    d = _card_dict(path, max_bytes)
    try:
        if _looks_like_world_info(d):
            return _world_info(d, path.stem)
        if not isinstance(d, Mapping):
            raise CardError("expected a JSON object")
        if d.get("spec") == "lorebook_v3":
            if not isinstance(d.get("data"), Mapping):
                raise CardError("data: expected an object")
            return Lorebook.from_dict(d["data"], "data")
        if isinstance(d.get("entries"), list):
            return Lorebook.from_dict(d, "character_book")
        if "spec" in d or "data" in d or "name" in d:
            character = Character.from_dict(d)
            if character.character_book is None:
                raise CardError("the character card has no lorebook (data.character_book)")
            return character.character_book
        raise CardError("not a lorebook: expected `entries` (a list, or SillyTavern's object of entries)")
    except CardError as exc:
        raise CardError(f"{path.name}: {exc}") from None


def write_lorebook(book: Lorebook, path: str | Path) -> Path:
    """Write `book` as a V3 standalone lorebook file (`{"spec": "lorebook_v3", "data": ...}`)."""
    path = Path(path)
    text = json.dumps({"spec": "lorebook_v3", "data": book.to_dict()}, ensure_ascii=False, indent=2) + "\n"
    _atomic_write(path, text.encode("utf-8"))
    return path
