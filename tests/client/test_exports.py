"""`runbase.client.__all__` lists every public name, in order, under the package's name."""

from __future__ import annotations

import inspect

import runbase.client


def _isort_key(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions.
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


def test_all_is_sorted() -> None:
    assert runbase.client.__all__ == sorted(runbase.client.__all__, key=_isort_key)


def test_all_is_complete() -> None:
    public = {
        name
        for name, value in vars(runbase.client).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert public == set(runbase.client.__all__)


def test_members_show_the_public_module() -> None:
    for name in runbase.client.__all__:
        member = getattr(runbase.client, name)
        if inspect.isclass(member) or inspect.isfunction(member):
            assert member.__module__ == "runbase.client", name
