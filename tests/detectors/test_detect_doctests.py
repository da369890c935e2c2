"""The examples in the engine's docstrings run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "detectors.commons_text",
    "detectors.decoding",
    "detectors.engine",
    "detectors.interpreter",
    "detectors.iocs",
    "detectors.model",
    "detectors.prefilter",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))

    assert result.failed == 0
    assert result.attempted > 0
