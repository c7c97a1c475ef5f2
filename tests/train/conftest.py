"""Fixtures for the training tests (settings live in train_helpers.py)."""

import pytest
from train_helpers import tiny_config


@pytest.fixture
def tiny():
    return tiny_config
