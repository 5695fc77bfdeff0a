"""rolechat.limits: JSON nesting and archive expansion are bounded before any reader walks or inflates them."""

from __future__ import annotations

import io
import zipfile

import pytest

from rolechat.limits import InputError, check_archive, check_depth, load_json


def test_json_within_the_depth_loads_and_deeper_json_names_where():
    assert load_json('{"a": [[1]]}') == {"a": [[1]]}
    assert load_json("[" * 100 + "]" * 100) is not None  # exactly the limit
    with pytest.raises(InputError, match=r"nested deeper than 100 levels \(at 0\.0\."):
        load_json("[" * 101 + "]" * 101)
    with pytest.raises(InputError, match=r"nested deeper than 3 levels \(at a\.1\.1\)"):
        load_json('{"a": [1, [2, [3]]]}', limit=3)
    with pytest.raises(InputError, match="nested deeper than 100 levels"):
        load_json("[" * 100_000 + "]" * 100_000)  # past the parser's own recursion: no RecursionError escapes


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"a": }', "invalid JSON at line 1, column 7"),
        ("[" + "1" * 5000 + "]", "invalid JSON: Exceeds the limit"),
        (b"\xff\xfe\x00", "invalid JSON"),
    ],
)
def test_every_bad_json_is_an_input_error(text, message):
    with pytest.raises(InputError, match=message):
        load_json(text)


def test_the_depth_check_is_iterative_and_counts_objects_and_lists_alike():
    value: list = []
    for _ in range(5000):  # far past Python's recursion limit
        value = [value]
    with pytest.raises(InputError, match=r"at 0\.0\.0"):
        check_depth(value, limit=3)
    check_depth({"a": [{"b": 1}]}, limit=3)
    check_depth([1] * 100_000, limit=1)


def archive(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_archives_are_judged_by_their_directory_before_anything_is_inflated():
    import os

    varied = os.urandom(300_000)  # does not compress: ratio ~1
    check_archive(archive(**{"word/document.xml": varied}), max_bytes=1_000_000)
    with pytest.raises(InputError, match=r"archive expands to 0\.6 MB, more than the limit of 0\.5 MB"):
        check_archive(archive(a=varied, b=varied), max_bytes=500_000)
    with pytest.raises(InputError, match=r"archive member word/document\.xml expands \d+ times"):
        check_archive(archive(**{"word/document.xml": b"<w:p/>" * 1_000_000}), max_bytes=10**9)
    check_archive(archive(styles=b" " * 50_000), max_bytes=10**9)  # small parts may compress very well
    with pytest.raises(InputError, match="archive of 12 members"):
        check_archive(archive(**{f"m{i}": b"x" for i in range(12)}), max_bytes=10**9, max_members=10)
    check_archive(b"not a zip at all", max_bytes=1)  # its own reader says what it is


def test_a_lying_directory_cannot_make_zipfile_inflate_more_than_it_declares():
    """Why the directory is enough: zipfile stops a member at its declared size (and fails its CRC)."""
    data = bytearray(archive(doc=b"a" * 1_000_000))
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (1000).to_bytes(4, "little")  # the directory now says 1,000 bytes
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf, pytest.raises(zipfile.BadZipFile):
        zf.read("doc")
