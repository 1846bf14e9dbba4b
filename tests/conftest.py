"""Shared test setup: quiet logs, a `slow` marker, small hypothesis budgets."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Subprocess tests (main, resume, sharding) reuse compiled programs instead of recompiling.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "rlvr_jax_test_xla_cache"))
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import hypothesis  # noqa: E402

hypothesis.settings.register_profile("ci", deadline=None, max_examples=30, derandomize=True)
hypothesis.settings.load_profile("ci")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: long-running (deselect with -m 'not slow')")
