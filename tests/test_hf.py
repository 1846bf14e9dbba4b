"""HF checkpoint import/export and the HF tokenizer, against transformers (CPU, tiny models)."""

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # never reach a hub: everything here is built in-process

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import tokenizers
import torch
import transformers

from rlvr_jax import models
from rlvr_jax.checkpoints import hf
from rlvr_jax.tokenizers import Tokenizer
from rlvr_jax.tokenizers.hf import HFTokenizer

TOL = 1e-4  # float32 end to end; observed errors are ~1e-6

_DIMS = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
             num_attention_heads=4, max_position_embeddings=64)
HF_CONFIGS = {
    "llama_gqa_tied": lambda: transformers.LlamaConfig(
        **_DIMS, num_key_value_heads=2, tie_word_embeddings=True, rms_norm_eps=1e-5,
        rope_theta=500_000.0),
    "llama3_rope_untied": lambda: transformers.LlamaConfig(
        **_DIMS, num_key_value_heads=1, tie_word_embeddings=False,
        # a short original context, so the low/medium/high frequency bands all occur at e=16
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    "llama_mha": lambda: transformers.LlamaConfig(
        **_DIMS, num_key_value_heads=4, tie_word_embeddings=False),
    "qwen2_bias": lambda: transformers.Qwen2Config(
        **_DIMS, num_key_value_heads=2, tie_word_embeddings=True, rope_theta=1e6),
    "qwen3_qknorm": lambda: transformers.Qwen3Config(
        **_DIMS, num_key_value_heads=2, head_dim=24, tie_word_embeddings=False, rope_theta=1e6),
}
_MODEL_CLASSES = {"llama": transformers.LlamaForCausalLM, "qwen2": transformers.Qwen2ForCausalLM,
                  "qwen3": transformers.Qwen3ForCausalLM}


def _torch_model(hf_config, seed=0):
  """A random HF model; norms and biases are randomized too so every tensor is exercised."""
  torch.manual_seed(seed)
  hf_config._attn_implementation = "eager"
  model = _MODEL_CLASSES[hf_config.model_type](hf_config).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "norm" in name else 0.0))
  return model


def _batch(vocab_size, seed=0):
  """Tokens [3, 7] with a full row and two LEFT-padded rows (mask 0 on padding)."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(0, vocab_size, (3, 7)).astype(np.int32)
  mask = np.ones((3, 7), np.int32)
  mask[1, :2] = 0
  mask[2, :5] = 0
  tokens[mask == 0] = 0
  return tokens, mask


def _torch_logits(model, tokens, mask):
  mask_t = torch.tensor(mask, dtype=torch.long)
  with torch.no_grad():
    return model(input_ids=torch.tensor(tokens, dtype=torch.long), attention_mask=mask_t,
                 position_ids=(mask_t.cumsum(-1) - 1).clamp(min=0)).logits.float().numpy()


def _max_err(c, params, model, seed=0):
  """Max-abs logit difference over the valid (non-padding) positions."""
  tokens, mask = _batch(c.vocab_size, seed)
  ours = np.asarray(models.forward(c, params, jnp.asarray(tokens), jnp.asarray(mask)))
  theirs = _torch_logits(model, tokens, mask)
  valid = mask.astype(bool)
  return float(np.abs(ours[valid] - theirs[valid]).max())


@pytest.mark.parametrize("case", sorted(HF_CONFIGS))
def test_load_matches_transformers(case, tmp_path):
  model = _torch_model(HF_CONFIGS[case]())
  model.save_pretrained(tmp_path)
  c, params = hf.load(tmp_path)
  assert c.qkv_bias == (case == "qwen2_bias") and c.qk_norm == (case == "qwen3_qknorm")
  assert c.tie_embeddings == ("lm_head" not in params)
  err = _max_err(c, params, model)
  print(f"{case}: load max-abs logit error {err:.2e}")
  assert err < TOL


def test_load_bfloat16_and_sharded(tmp_path):
  model = _torch_model(HF_CONFIGS["qwen2_bias"]()).to(torch.bfloat16)
  model.save_pretrained(tmp_path, max_shard_size="40KB")
  assert (tmp_path / "model.safetensors.index.json").exists()
  c, params = hf.load(tmp_path)  # bf16 tensors upcast exactly to float32
  assert jax.tree.leaves(params)[0].dtype == jnp.float32
  # Reloaded rather than `model.float()`, whose RoPE inv_freq buffer was rounded to bf16.
  reference = transformers.AutoModelForCausalLM.from_pretrained(
      tmp_path, dtype=torch.float32, attn_implementation="eager").eval()
  err = _max_err(c, params, reference)
  print(f"qwen2 bf16 sharded: load max-abs logit error {err:.2e}")
  assert err < TOL
  c16, params16 = hf.load(tmp_path, dtype="bfloat16")
  assert c16.param_dtype == c16.dtype == "bfloat16"
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(params16))


_OUR_CONFIGS = {
    "llama": models.tiny(101, rope_theta=500_000.0, norm_eps=1e-5),
    "llama3_untied": models.preset(
        "llama3.2-1b", vocab_size=101, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
        d_ff=96, tie_embeddings=False,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    "qwen2": models.preset("qwen2.5-0.5b", vocab_size=101, d_model=64, n_layers=2, n_heads=4,
                           n_kv_heads=2, d_ff=96),
    "qwen3": models.preset("qwen3-0.6b", vocab_size=101, d_model=64, n_layers=2, n_heads=4,
                           n_kv_heads=2, head_dim=24, d_ff=96, tie_embeddings=False),
}


def _random_params(c, seed=0):
  """init_params with every leaf (norms, biases too) perturbed."""
  params = models.init_params(c, jax.random.key(seed))
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  return jax.tree.unflatten(treedef, [x + 0.1 * jax.random.normal(k, x.shape, x.dtype)
                                      for x, k in zip(leaves, keys)])


@pytest.mark.parametrize("case", sorted(_OUR_CONFIGS))
def test_save_loads_in_transformers(case, tmp_path):
  c = _OUR_CONFIGS[case]
  params = _random_params(c)
  hf.save(tmp_path, c, params)
  written = json.loads((tmp_path / "config.json").read_text())
  assert written["model_type"] == {"qwen2": "qwen2", "qwen3": "qwen3"}.get(case, "llama")
  model = transformers.AutoModelForCausalLM.from_pretrained(
      tmp_path, dtype=torch.float32, attn_implementation="eager").eval()
  err = _max_err(c, params, model)
  print(f"{case}: save max-abs logit error {err:.2e}")
  assert err < TOL
  c2, params2 = hf.load(tmp_path)  # and the round trip is exact
  assert c2 == c
  jax.tree.map(np.testing.assert_array_equal, params2, params)


def test_errors_name_file_and_tensor(tmp_path):
  c = _OUR_CONFIGS["qwen2"]
  hf.save(tmp_path, c, _random_params(c))
  weights = safetensors.numpy.load_file(tmp_path / "model.safetensors")
  del weights["model.layers.1.self_attn.k_proj.bias"]
  safetensors.numpy.save_file(weights, tmp_path / "model.safetensors")
  with pytest.raises(ValueError, match=r"model\.safetensors.*model\.layers\.1\.self_attn\.k_proj"):
    hf.load(tmp_path)

  weights["model.layers.1.self_attn.k_proj.bias"] = np.zeros(3, np.float32)
  safetensors.numpy.save_file(weights, tmp_path / "model.safetensors")
  with pytest.raises(ValueError, match=r"k_proj\.bias' has shape \(3,\)"):
    hf.load(tmp_path)

  weights["model.layers.1.self_attn.k_proj.bias"] = np.zeros(32, np.float32)
  weights["model.layers.0.self_attn.o_proj.bias"] = np.zeros(64, np.float32)
  safetensors.numpy.save_file(weights, tmp_path / "model.safetensors")
  with pytest.raises(ValueError, match=r"does not use.*o_proj\.bias"):
    hf.load(tmp_path)

  config = json.loads((tmp_path / "config.json").read_text())
  config["architectures"] = ["GPT2LMHeadModel"]
  (tmp_path / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match=r"config\.json: unsupported architecture 'GPT2LMHeadModel'"):
    hf.load(tmp_path)


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------
_CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
                  "{{ eos_token }}{% endfor %}{% if add_generation_prompt %}<|assistant|>"
                  "{% endif %}")


def _tiny_tokenizer():
  """A word-level BPE trained in-process, with <s>, </s>, <pad> and chat-role tokens."""
  tok = tokenizers.Tokenizer(tokenizers.models.BPE())
  tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = tokenizers.decoders.ByteLevel()
  specials = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>"]
  trainer = tokenizers.trainers.BpeTrainer(
      vocab_size=300, special_tokens=specials,
      initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(["the capital of france is paris", "hello world, hello there"] * 20,
                          trainer)
  # A post-processor that adds BOS, which `encode` must not apply.
  tok.post_processor = tokenizers.processors.TemplateProcessing(
      single="<s> $A", special_tokens=[("<s>", 1)])
  return tok


def test_tokenizer_from_dir(tmp_path):
  tok = _tiny_tokenizer()
  tok.save(str(tmp_path / "tokenizer.json"))
  (tmp_path / "tokenizer_config.json").write_text(json.dumps({
      "bos_token": "<s>", "eos_token": {"content": "</s>", "special": True},
      "pad_token": "<pad>", "chat_template": _CHAT_TEMPLATE}))
  t = HFTokenizer.from_dir(tmp_path)
  assert isinstance(t, Tokenizer)
  assert (t.pad_id, t.bos_id, t.eos_id) == (0, 1, 2)
  assert t.vocab_size == tok.get_vocab_size()
  text = "hello world, the capital of france is paris"
  ids = t.encode(text)
  assert ids == tok.encode(text, add_special_tokens=False).ids and 1 not in ids
  assert t.decode(ids) == text
  assert t.decode([t.bos_id, *ids, t.eos_id, t.pad_id, t.pad_id]) == text
  assert t.id_to_piece(ids[1]) == "Ġworld"
  messages = [{"role": "user", "content": "hello"}]
  prompt = t.chat(messages)
  assert prompt == "<s><|user|>hello</s><|assistant|>"
  assert t.chat(messages, add_generation_prompt=False) == "<s><|user|>hello</s>"
  assert t.encode(prompt)[:2] == [1, 3]  # special-token text encodes to its single id


def test_tokenizer_without_template_and_pad():
  t = HFTokenizer(_tiny_tokenizer(), eos_id=2)
  assert t.pad_id == 2 and t.bos_id is None
  with pytest.raises(NotImplementedError):
    t.chat([{"role": "user", "content": "hi"}])
  with pytest.raises(ValueError, match="outside the vocabulary"):
    HFTokenizer(_tiny_tokenizer(), eos_id=10_000)


def test_chat_template_is_sandboxed():
  evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
  t = HFTokenizer(_tiny_tokenizer(), eos_id=2, chat_template=evil)
  with pytest.raises(Exception, match="unsafe|not safely|access"):
    t.chat([])


def test_tokenizer_matches_transformers_chat_template(tmp_path):
  tok = _tiny_tokenizer()
  fast = transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
  fast.chat_template = ("{% for m in messages %}{{ m['role'] | tojson }}: {{ m['content'] }}\n"
                        "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")
  fast.save_pretrained(tmp_path)
  t = HFTokenizer.from_dir(tmp_path)
  messages = [{"role": "system", "content": "é <b>"}, {"role": "user", "content": "hello"}]
  assert t.chat(messages) == fast.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=True)
