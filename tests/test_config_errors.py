"""Bad configs stop before compiling with one message naming the field."""

import subprocess
import sys

import pytest

from rlvr_jax import configs_base
from rlvr_jax.training import loop
from tests.helpers import ROOT, load_config


@pytest.mark.parametrize("path,value,field", [
    ("rl.group_size", 1, "rl.group_size"),
    ("rl.minibatches", 5, "rl.minibatches"),
    ("algorithm.advantage", "nope", "algorithm"),
    ("algorithm.loss_agg", "token-avg", "algorithm"),
    ("rl.top_p", 0.0, "rl.top_p"),
    ("eval.every", 0, "eval.every"),
    ("model.vocab_size", 5, "model.vocab_size"),  # fewer ids than the tokenizer has
    ("model.vocab_multiple", 0, "model.vocab_multiple"),
    ("data.prompt_bucket", -1, "data.prompt_bucket"),
    ("model.remat", "sometimes", "model.remat"),
    ("model.cache_dtype", "int8", "model.cache_dtype"),
])
def test_bad_values_name_the_field(path, value, field):
  config = load_config()
  node = config
  *parents, leaf = path.split(".")
  for p in parents:
    node = node[p]
  node[leaf] = value
  with pytest.raises(ValueError, match=field.replace(".", r"\.")):
    loop.Run(config)


def test_padded_vocabulary_rounds_up_and_masks_the_padding():
  config = load_config()
  config.model.update(vocab_size=0, vocab_multiple=128)
  run = loop.Run(config)
  c = run.model_config
  assert c.vocab_size == 128 and c.valid_vocab_size == run.tokenizer.vocab_size < 128
  config = load_config()
  config.model.update(vocab_size=300, vocab_multiple=128)
  assert loop.Run(config).model_config.vocab_size == 384


def test_batch_not_divisible_by_mesh():
  config = load_config()
  config.mesh.data = 2
  with pytest.raises(ValueError, match="config.mesh"):
    loop.Run(config)  # one CPU device cannot hold a 2-way data axis


def _main(*args, workdir):
  return subprocess.run(
      [sys.executable, "-m", "rlvr_jax.main", "--config=configs/quickstart.py:tiny",
       f"--workdir={workdir}", "--noprogress", *args],
      cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_unknown_override_key_fails_at_the_flag(tmp_path):
  proc = _main("--config.rl.grop_size=4", workdir=tmp_path)
  assert proc.returncode != 0
  assert "grop_size" in proc.stderr


def test_group_of_one_fails_before_compiling(tmp_path):
  proc = _main("--config.rl.group_size=1", workdir=tmp_path)
  assert proc.returncode == 1
  assert "config.rl.group_size" in proc.stderr and "group_size >= 2" in proc.stderr
  assert not (tmp_path / "metrics.jsonl").exists()


def test_load_config_takes_the_flag_syntax():
  path = f"{ROOT}/configs/quickstart.py"
  assert configs_base.load_config(path).rl.steps == load_config(arg=None).rl.steps
  assert configs_base.load_config(f"{path}:tiny").model.d_model == load_config().model.d_model
  with pytest.raises(ValueError, match="unknown variant 'huge'"):
    configs_base.load_config(f"{path}:huge")
  with pytest.raises(ValueError, match="nope.py' does not exist"):
    configs_base.load_config(f"{ROOT}/configs/nope.py:tiny")
