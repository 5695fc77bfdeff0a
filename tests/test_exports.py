"""A lazily exported name is imported with its submodule on first use, and only then."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture
def package(tmp_path, monkeypatch):
    folder = tmp_path / "made_up_pkg"
    folder.mkdir()
    (folder / "__init__.py").write_text(
        "from rolechat.exports import lazy\n"
        "_EXPORTS = {'heavy': ['Heavy']}\n"
        "__all__, __getattr__, __dir__ = lazy(__name__, _EXPORTS)\n",
        encoding="utf-8",
    )
    (folder / "heavy.py").write_text("LOADS = []\nclass Heavy:\n    pass\nLOADS.append(1)\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield __import__("made_up_pkg")
    for name in ("made_up_pkg", "made_up_pkg.heavy"):
        sys.modules.pop(name, None)


def test_the_submodule_is_imported_on_first_use_and_the_name_kept(package):
    assert "made_up_pkg.heavy" not in sys.modules
    assert "Heavy" in dir(package) and "__all__" in dir(package)
    heavy = package.Heavy
    assert heavy is sys.modules["made_up_pkg.heavy"].Heavy
    assert vars(package)["Heavy"] is heavy  # found as a plain attribute from now on
    assert package.Heavy is heavy and sys.modules["made_up_pkg.heavy"].LOADS == [1]


def test_an_unknown_name_is_an_attribute_error_naming_the_package(package):
    with pytest.raises(AttributeError, match="module 'made_up_pkg' has no attribute 'Light'"):
        package.__getattr__("Light")
    assert not hasattr(package, "heavy_thing")
