"""Every docstring example in ``src/raptor`` runs and shows what it claims (STYLE rule 12:
examples are doctests). Modules whose optional extra is not installed are reported, not
skipped silently: the dev install has every extra, so here every module must import."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import raptor

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(raptor.__path__, "raptor.")
    if ".proto" not in m.name and not m.name.endswith("__main__")  # __main__ runs the CLI
)


def test_the_package_has_doctests_to_run() -> None:
    found = 0
    finder = doctest.DocTestFinder()
    for name in MODULES:
        found += sum(len(t.examples) for t in finder.find(importlib.import_module(name)))
    assert found >= 40  # 44 examples when this test was written; a drop means lost examples


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
