"""`python -m rlvr_jax.evaluate` keeps working: the evaluation CLI is rlvr_jax/evaluation/main.py
(`rlvr-eval`), the eval loop rlvr_jax/evaluation/evaluate.py."""

from rlvr_jax.evaluation.main import run

if __name__ == "__main__":
  run()
