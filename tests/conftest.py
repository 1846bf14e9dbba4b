"""Shared test setup: quiet logs, a `slow` marker, small hypothesis budgets."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import hypothesis  # noqa: E402

hypothesis.settings.register_profile("ci", deadline=None, max_examples=30, derandomize=True)
hypothesis.settings.load_profile("ci")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: long-running (deselect with -m 'not slow')")
