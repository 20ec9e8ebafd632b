"""Fixtures for the unit tests (builders live in helpers.py)."""

from __future__ import annotations

import pytest

from shared.settings import Settings

from .helpers import load_settings, make_workflow


@pytest.fixture
def workflow() -> dict:
    return make_workflow()


@pytest.fixture
def settings() -> Settings:
    return load_settings()
