"""The lorebook library: standalone lorebooks under `$ROLECHAT_HOME/lorebooks/NAME.json`, for chats, scenes and
the global world info to use by name.

    name, book = add_book("world.json")      # import a lorebook file (any format `read_lorebook` reads) by its name
    list_books()                             # [(name, entries, error)], broken files named, not raised
    book = load_book("大唐")                  # a library name, or a path to a lorebook file; CardError otherwise
    delete_book("大唐")

Books are stored as V3 `lorebook_v3` files. `load_book` caches what it read by the file's modification time and
size, so a chat that names its books every turn reads each file once.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from rolechat import settings
from rolechat.conversation.cardfile import read_lorebook, write_lorebook
from rolechat.conversation.lorebook import CardError, Lorebook

__all__ = ["add_book", "book_name", "books_dir", "delete_book", "list_books", "load_book"]

_cache: dict[Path, tuple[tuple[int, int], Lorebook]] = {}
_lock = threading.Lock()


def books_dir() -> Path:
    """Where the library keeps its books (created on first use)."""
    path = settings.home() / "lorebooks"
    path.mkdir(parents=True, exist_ok=True)
    return path


def book_name(text: str) -> str:
    """A library name from a book's name or file stem: spaces and path characters made '_'."""
    name = re.sub(r"[\\/:*?\"<>|\s]+", "_", text.strip()).strip("._")[:64]
    return name or "lorebook"


def _path(name: str) -> Path:
    if not name or name != book_name(name):
        raise CardError(f"not a lorebook name: {name!r} (letters, digits, - and _; no paths)")
    return books_dir() / f"{name}.json"


def add_book(source: str | Path, name: str | None = None, *, replace: bool = False, max_bytes: int | None = None):
    """Import the lorebook in `source` as library book `name` (default: the book's own name, else the file's
    stem); FileExistsError unless `replace`. Returns (name, book)."""
    book = read_lorebook(source, max_bytes)
    name = book_name(name or book.name or Path(source).stem)
    path = _path(name)
    if path.exists() and not replace:
        raise FileExistsError(f"lorebook {name!r} already exists in {books_dir()}; pass --replace to replace it")
    if not book.name:
        book.name = name
    write_lorebook(book, path)
    return name, book


def list_books() -> list[tuple[str, int, str]]:
    """(name, number of entries, error) of every book in the library; a broken file has its error, not a raise."""
    found = []
    for path in sorted(books_dir().glob("*.json")):
        try:
            found.append((path.stem, len(load_book(path.stem).entries), ""))
        except CardError as exc:
            found.append((path.stem, 0, str(exc)))
    return found


def load_book(name_or_path: str | Path, max_bytes: int | None = None, *, library_only: bool = False) -> Lorebook:
    """A library book by name, or a lorebook file by path (cached while the file is unchanged; `library_only`:
    names only, as the API takes). CardError naming the books there are when there is neither."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if library_only or not (path.suffix and path.is_file()):
        candidate = books_dir() / f"{book_name(text)}.json"
        if not candidate.is_file() or (library_only and book_name(text) != text):
            known = ", ".join(n for n, _, _ in _names()) or "none"
            raise CardError(f"no lorebook {text!r}: neither a file nor a book in {books_dir()} (books: {known})")
        path = candidate
    try:
        stat = path.stat()
    except OSError as exc:
        raise CardError(f"{path}: {exc}") from None
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _lock:
        cached = _cache.get(path.resolve())
        if cached is not None and cached[0] == stamp:
            return cached[1]
    book = read_lorebook(path, max_bytes)
    if not book.name:
        book.name = path.stem
    with _lock:
        _cache[path.resolve()] = (stamp, book)
    return book


def _names() -> list[tuple[str, int, str]]:
    return [(p.stem, 0, "") for p in sorted(books_dir().glob("*.json"))]


def delete_book(name: str) -> None:
    """Remove library book `name`; CardError when there is none."""
    path = _path(name)
    if not path.is_file():
        raise CardError(f"no lorebook {name!r} in {books_dir()}")
    path.unlink()
