"""Reading untyped JSON fields (character cards, lorebooks, SillyTavern exports) with precise errors.

Each reader takes the raw value and `where`, the field's path in the file ("entries[3].keys"), and returns the
value as the dataclasses want it, or raises `CardError` naming that path and what was wrong. Community cards
are written by many tools, so the readers accept the lax forms those tools write (a number where a string
belongs, "true" for true, one "a, b" string for a list of keys) and refuse everything else.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["CardError", "as_bool", "as_count", "as_dict", "as_number", "as_str", "as_str_list"]


class CardError(ValueError):
    """A character card or lorebook is unusable; the message names the file (when known) and the field."""


def as_str(value: Any, where: str, default: str = "") -> str:
    """A string; `default` when absent."""
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # community cards sometimes hold a number where a string belongs (a version "1")
    raise CardError(f"{where}: expected a string, got {type(value).__name__}")


def as_str_list(value: Any, where: str, *, split_commas: bool = False) -> list[str]:
    """A list of strings; [] when absent, and a lone string as a list of it (or of its comma-separated parts)."""
    if value is None:
        return []
    if isinstance(value, str):  # a keys field written as one "a, b" string (SillyTavern's plaintext key input)
        if not split_commas:
            return [value] if value else []
        return [k.strip() for k in value.split(",") if k.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CardError(f"{where}: expected a list of strings")
    return list(value)


def as_bool(value: Any, where: str, default: bool | None = False) -> bool | None:
    """true or false (also 0, 1 and the strings "true" and "false"); `default` when absent."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):  # a lax writer's "true"
        return value.strip().lower() == "true"
    raise CardError(f"{where}: expected true or false, got {value!r}")


def as_number(value: Any, where: str, default: Any = None) -> Any:
    """A finite number (an int when it is whole; numeric strings too); `default` when absent or empty."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise CardError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise CardError(f"{where}: expected a number, got {value!r}")
        return int(value) if float(value).is_integer() else value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise CardError(f"{where}: expected a number, got {value!r}") from None
        return as_number(number, where, default)
    raise CardError(f"{where}: expected a number, got {type(value).__name__}")


def as_count(value: Any, where: str, default: Any = None) -> Any:
    """A whole number >= 0 (or `default` when absent)."""
    number = as_number(value, where, default)
    if number is not default and (not isinstance(number, int) or number < 0):
        raise CardError(f"{where}: expected a whole number >= 0, got {value!r}")
    return number


def as_dict(value: Any, where: str) -> dict[str, Any]:
    """A JSON object, deep-copied (the caller may keep and change it); {} when absent."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CardError(f"{where}: expected an object")
    return copy.deepcopy(value)
