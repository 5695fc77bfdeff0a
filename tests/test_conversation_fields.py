"""The field readers take the lax forms card tools write and name the field of anything else."""

from __future__ import annotations

import pytest

from rolechat.conversation import lorebook
from rolechat.conversation.fields import CardError, as_bool, as_count, as_dict, as_number, as_str, as_str_list


def test_lax_forms_that_card_tools_write_are_read_as_meant():
    assert as_str(1, "data.character_version") == "1"
    assert as_str(None, "data.name", "无名") == "无名"
    assert as_str_list("长安, 西市 ,", "entries[0].keys", split_commas=True) == ["长安", "西市"]
    assert as_str_list("长安, 西市", "data.tags") == ["长安, 西市"]
    assert as_bool(" TRUE ", "entries[0].enabled") is True
    assert as_bool(0, "entries[0].enabled") is False
    assert as_bool(None, "entries[0].constant", None) is None
    assert as_number("3.0", "entries[0].order") == 3 and isinstance(as_number("3.0", "x"), int)
    assert as_number("", "entries[0].order", 100) == 100
    assert as_count(None, "scan_depth", None) is None


@pytest.mark.parametrize(
    "read, value, message",
    [
        (as_str, ["a"], "data.name: expected a string, got list"),
        (as_str_list, ["a", 1], "data.name: expected a list of strings"),
        (as_bool, "yes", "data.name: expected true or false, got 'yes'"),
        (as_number, True, "data.name: expected a number, got True"),
        (as_number, float("nan"), "data.name: expected a number, got nan"),
        (as_number, "三", "data.name: expected a number, got '三'"),
        (as_count, -1, "data.name: expected a whole number >= 0, got -1"),
        (as_count, 1.5, "data.name: expected a whole number >= 0, got 1.5"),
        (as_dict, [], "data.name: expected an object"),
    ],
)
def test_anything_else_is_refused_naming_the_field_and_the_value(read, value, message):
    with pytest.raises(CardError) as caught:
        read(value, "data.name")
    assert str(caught.value) == message


def test_an_object_is_copied_so_the_reader_owns_it():
    raw = {"depth_prompt": {"depth": 4}}
    read = as_dict(raw, "data.extensions")
    read["depth_prompt"]["depth"] = 1
    assert raw == {"depth_prompt": {"depth": 4}}


def test_the_lorebook_raises_the_same_card_error_its_callers_catch():
    assert lorebook.CardError is CardError
