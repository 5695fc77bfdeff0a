"""conversation.books (the lorebook library) and conversation.setting (what a chat adds around its characters)."""

from __future__ import annotations

import json

import pytest

from rolechat.conversation.books import add_book, books_dir, delete_book, list_books, load_book
from rolechat.conversation.lorebook import CardError
from rolechat.conversation.setting import AuthorsNote, ChatSetting

WORLD = {"entries": {"0": {"uid": 0, "key": ["雨"], "content": "下雨", "order": 10}}, "name": "天气"}


def test_the_library_imports_lists_loads_and_deletes_books(tmp_path):
    path = tmp_path / "world.json"
    path.write_text(json.dumps(WORLD, ensure_ascii=False), encoding="utf-8")
    name, book = add_book(path)
    assert name == "天气" and len(book.entries) == 1
    with pytest.raises(FileExistsError, match="--replace"):
        add_book(path)
    add_book(path, "另一个 名字")  # a name with a space becomes a file name without one
    (books_dir() / "broken.json").write_text("{", encoding="utf-8")
    listed = {n: (count, error) for n, count, error in list_books()}
    assert listed["天气"] == (1, "") and listed["另一个_名字"] == (1, "") and "invalid JSON" in listed["broken"][1]
    assert load_book("天气").entries[0].content == "下雨" and load_book(path).name == "天气"
    delete_book("天气")
    with pytest.raises(CardError, match="no lorebook '天气'.*books: broken, 另一个_名字"):
        load_book("天气")


def test_a_library_only_load_takes_no_path(tmp_path):
    path = tmp_path / "secret.json"
    path.write_text(json.dumps(WORLD), encoding="utf-8")
    assert load_book(str(path)).name == "天气"
    for name in (str(path), "../secret", "天气/../x"):
        with pytest.raises(CardError, match="no lorebook"):
            load_book(name, library_only=True)


def test_a_changed_file_is_read_again(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(WORLD), encoding="utf-8")
    first = load_book(path)
    assert load_book(path) is first  # cached while unchanged
    path.write_text(json.dumps({**WORLD, "name": "新名字"}), encoding="utf-8")
    assert load_book(path).name == "新名字"


def test_a_setting_round_trips_and_bad_ones_name_the_field():
    setting = ChatSetting(
        ["天气"], "雨夜", AuthorsNote("紧张", depth=2, role="user"), {"sticky": {"b.0": {"start": 1}}}
    )
    assert ChatSetting.from_dict(setting.as_dict()) == setting
    assert ChatSetting.from_dict(None) == ChatSetting()
    for bad, field in (
        ({"lorebooks": "天气"}, "lorebooks"),
        ({"scenario": 3}, "scenario"),
        ({"authors_note": {"text": "x", "colour": 1}}, "authors_note: unknown field 'colour'"),
        ({"authors_note": {"text": "x", "position": "sideways"}}, "position must be one of"),
        ({"lore_state": []}, "lore_state"),
    ):
        with pytest.raises(ValueError, match=field):
            ChatSetting.from_dict(bad)


@pytest.mark.parametrize(
    ("interval", "due"), [(1, [1, 1, 1, 1]), (2, [0, 1, 0, 1]), (3, [0, 0, 1, 0]), (0, [0, 0, 0, 0])]
)
def test_the_authors_note_comes_every_interval_user_messages(interval, due):
    note = AuthorsNote("x", interval=interval)
    assert [int(note.due(n)) for n in (1, 2, 3, 4)] == due
