"""Autoregressive sampling: one prefill, then KV-cache decode inside `lax.while_loop`.

The loop exits as soon as every row has emitted EOS (or a stop token), so short answers cost
short loops even with a generous `max_new_tokens`. With in-flight refill (`decode_slots`) fewer
rows decode at once and a finished row's slot takes the next waiting (prompt, sample) row, so
slots rarely idle behind the longest row. Everything is jittable; the arguments after `rng` are
static.
"""

from __future__ import annotations

from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp

from rlvr_jax import models


@flax.struct.dataclass
class Completions:
  """Sampled completions. n is `max_new_tokens`.

  Attributes:
    tokens: int32 [b, n]; `pad_id` after the first EOS / stop token.
    logprobs: float32 [b, n]; log-probability of each sampled token under the sampling
      distribution softmax(logits / temperature) before top-k / top-p truncation (raw logits
      when greedy); 0 on masked positions.
    entropies: float32 [b, n]; entropy of that same distribution; 0 on masked positions.
    mask: float32 [b, n]; 1 up to and including the first EOS / stop token.
    proxy_logprobs: float32 [b, n] or None; with `proxy_min_p` κ, each sampled token's log-prob
      under the min-p proxy of the sampling distribution (`models.min_p_logprobs`: the raw
      distribution's ids below κ x its max dropped, the rest renormalised at the temperature);
      0 on masked positions. None unless asked for.
  """

  tokens: jax.Array
  logprobs: jax.Array
  entropies: jax.Array
  mask: jax.Array
  proxy_logprobs: jax.Array | None = None

  @property
  def lengths(self) -> jax.Array:
    """int32 [b]: number of valid tokens (EOS included)."""
    return self.mask.sum(-1).astype(jnp.int32)


def filter_logits(logits_bv: jax.Array, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """Sets logits outside the top-k / nucleus (top-p) set to -inf. Static k and p."""
  if top_k > 0:
    kth = jax.lax.top_k(logits_bv, top_k)[0][..., -1:]
    logits_bv = jnp.where(logits_bv < kth, -jnp.inf, logits_bv)
  if top_p < 1.0:
    sorted_desc = jnp.sort(logits_bv, axis=-1)[..., ::-1]
    probs = jax.nn.softmax(sorted_desc, axis=-1)
    # Keep a token while the mass strictly before it is < top_p: the top token always stays.
    keep = (jnp.cumsum(probs, axis=-1) - probs) < top_p
    threshold = jnp.min(jnp.where(keep, sorted_desc, jnp.inf), axis=-1, keepdims=True)
    logits_bv = jnp.where(logits_bv < threshold, -jnp.inf, logits_bv)
  return logits_bv


def categorical(u_b: jax.Array, logits_bv: jax.Array, block: int | None = None) -> jax.Array:
  """int32 [b]: exact draws from softmax(logits) by inverting the CDF at the uniforms u [b]."""
  return inverse_cdf(u_b, jax.nn.softmax(logits_bv, axis=-1), block)


def _block_size(v: int) -> int:
  """The largest power of two in [64, 512] dividing v (no padding copy), else 256."""
  return next((k for k in (512, 256, 128, 64) if v % k == 0), 256)


def inverse_cdf(u_b: jax.Array, probs_bv: jax.Array, block: int | None = None) -> jax.Array:
  """int32 [b]: the id where the CDF of `probs` first exceeds u x total, u in [0, 1) [b].

  One uniform per row instead of the Gumbel-max trick's one per vocabulary entry: on CPU,
  hashing b x v random numbers every decode step cost more than the step's matmuls. The CDF is
  never built over the whole vocabulary: the draw picks a block of `block` ids from the block
  masses' CDF, then the id inside it, two short cumulative sums instead of one of length v.
  Ids of zero probability (filtered to -inf) are never drawn.
  """
  b, v = probs_bv.shape
  block = block or _block_size(v)
  n_blocks = -(-v // block)
  if n_blocks * block != v:
    probs_bv = jnp.pad(probs_bv, ((0, 0), (0, n_blocks * block - v)))
  probs_bnk = probs_bv.reshape(b, n_blocks, block)
  mass_bn = probs_bnk.sum(-1)
  cdf_bn = jnp.cumsum(mass_bn, axis=-1)
  total_b = cdf_bn[:, -1]
  # threshold in [0, total): the first entry whose CDF exceeds it has positive probability
  threshold_b = jnp.minimum(u_b * total_b, jnp.nextafter(total_b, 0.0))
  block_b = jnp.minimum(jnp.sum(cdf_bn <= threshold_b[:, None], axis=-1), n_blocks - 1)
  before_b = jnp.take_along_axis(cdf_bn - mass_bn, block_b[:, None], axis=-1)[:, 0]
  within_bk = jnp.take_along_axis(probs_bnk, block_b[:, None, None], axis=1)[:, 0]
  cdf_bk = jnp.cumsum(within_bk, axis=-1)
  rest_b = jnp.minimum(threshold_b - before_b, jnp.nextafter(cdf_bk[:, -1], 0.0))
  index_b = jnp.minimum(jnp.sum(cdf_bk <= rest_b[:, None], axis=-1), block - 1)
  return (block_b * block + index_b).astype(jnp.int32)


def first_argmax(x_bv: jax.Array, max_b1: jax.Array | None = None) -> jax.Array:
  """int32 [b]: `jnp.argmax(x, -1)` (the first index of the maximum; of the first NaN if any)
  as two plain reductions, a max and a min over indices. XLA:CPU lowers argmax to one variadic
  (value, index) reduce that it does not vectorise: 0.3-0.5 ms for [32, 2048] and 7-18 ms for
  [16, 49152], against a few microseconds here. `max_b1`: `jnp.max(x, -1, keepdims=True)` when
  the caller has it."""
  v = x_bv.shape[-1]
  m = jnp.max(x_bv, axis=-1, keepdims=True) if max_b1 is None else max_b1
  hit = (x_bv == m) | jnp.isnan(x_bv)  # with a NaN, max is NaN and argmax picks the first NaN
  index = jnp.min(jnp.where(hit, jnp.arange(v, dtype=jnp.int32), v), axis=-1)
  return jnp.minimum(index, v - 1)


def _choose(u_b, logits_bv, temperature, top_k, top_p, proxy_min_p=None):
  """Returns (token [b], logprob [b], entropy [b]) for one decode position; the distribution's
  exponentials are computed once and shared by the draw, the log-prob and the entropy. With
  `proxy_min_p` κ (static) a fourth: the token's `models.min_p_logprobs` (greedy: of the raw
  logits)."""
  scaled = logits_bv if temperature == 0.0 else logits_bv / temperature
  max_b1 = jnp.max(scaled, axis=-1, keepdims=True)
  shifted = scaled - max_b1
  exp_bv = jnp.exp(shifted)
  total_b1 = jnp.sum(exp_bv, axis=-1, keepdims=True)
  probs_bv = exp_bv / total_b1
  logp_bv = shifted - jnp.log(total_b1)
  entropy = -jnp.sum(probs_bv * logp_bv, axis=-1)
  if temperature == 0.0:
    token = first_argmax(logits_bv, max_b1)  # scaled is logits_bv: the max is shared
  elif top_k > 0 or top_p < 1.0:
    token = categorical(u_b, filter_logits(scaled, top_k, top_p))
  else:
    token = inverse_cdf(u_b, probs_bv)
  logprob = jnp.take_along_axis(logp_bv, token[:, None], axis=-1)[:, 0]
  if proxy_min_p is None:
    return token, logprob, entropy
  proxy = models.min_p_logprobs(scaled, token, min_p=proxy_min_p,
                                temperature=temperature if temperature > 0.0 else 1.0)
  return token, logprob, entropy, proxy


@flax.struct.dataclass
class DecodeStats:
  """What one call's decode loop cost.

  Attributes:
    decode_steps: float32 scalar; iterations of the decode loop (each runs every decoding row).
    slot_utilisation: float32 scalar; generated tokens / (decode_steps x rows decoding): the
      share of row-steps that produced a token (the rest ran for rows already finished).
  """

  decode_steps: jax.Array
  slot_utilisation: jax.Array


def generate(model_config: models.ModelConfig, params: models.Params, prompts: jax.Array,
             prompt_mask: jax.Array, rng: jax.Array, *, max_new_tokens: int,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             eos_id: int | None = None, stop_ids: Sequence[int] = (),
             pad_id: int = 0, num_samples: int = 1, decode_slots: int | None = None,
             proxy_min_p: float | None = None) -> Completions:
  """Samples `max_new_tokens` continuations of left-padded prompts.

  Args:
    model_config: the policy architecture.
    params: policy parameters.
    prompts: int32 [b, p], left-padded.
    prompt_mask: [b, p], 1 on prompt tokens, 0 on left padding.
    rng: PRNG key of the uniforms [n, b * num_samples] (drawn once, before the decode loop)
      that pick the tokens: row q's token i inverts the CDF at uniforms[i, q].
    max_new_tokens: n, the completion buffer length.
    temperature: 0 means greedy (argmax).
    top_k, top_p: truncation of the sampling distribution (0 / 1.0 disable).
    eos_id, stop_ids: a row finishes after emitting any of these (none: every row runs n tokens).
    pad_id: written after a row finishes.
    num_samples: completions per prompt (a GRPO group), in consecutive rows; each prompt is
      prefilled once and its cache shared by its samples.
    decode_slots: None: every row decodes from the first step to the last (the loop runs as
      long as the longest row). k >= 1: in-flight refill, k rows decode at once and a finished
      row's slot takes the next waiting (prompt, sample) row (0: `auto_slots`). The same
      tokens either way (per-row uniforms; the same prefill); see `_decode_refill`.
    proxy_min_p: κ > 0: also `Completions.proxy_logprobs` (the min-p proxy); None: not (the
      loop computes what it computed before).

  Returns:
    `Completions` with [b * num_samples, n] arrays.
  """
  return generate_with_stats(
      model_config, params, prompts, prompt_mask, rng, max_new_tokens=max_new_tokens,
      temperature=temperature, top_k=top_k, top_p=top_p, eos_id=eos_id, stop_ids=stop_ids,
      pad_id=pad_id, num_samples=num_samples, decode_slots=decode_slots,
      proxy_min_p=proxy_min_p)[0]


def generate_with_stats(model_config: models.ModelConfig, params: models.Params,
                        prompts: jax.Array, prompt_mask: jax.Array, rng: jax.Array, *,
                        max_new_tokens: int, temperature: float = 1.0, top_k: int = 0,
                        top_p: float = 1.0, eos_id: int | None = None,
                        stop_ids: Sequence[int] = (), pad_id: int = 0, num_samples: int = 1,
                        decode_slots: int | None = None, proxy_min_p: float | None = None
                        ) -> tuple[Completions, DecodeStats]:
  """`generate` (same arguments and completions) and what its decode loop cost. LoRA adapters
  in `params` are merged into their weights first, unless they ask not to be
  (`models.lora.for_sampling`)."""
  params = models.lora.for_sampling(params)
  stops = ([eos_id] if eos_id is not None else []) + list(stop_ids)
  choose = lambda u_b, logits_bv: _choose(u_b, logits_bv, temperature, top_k, top_p, proxy_min_p)
  kw = dict(n=max_new_tokens, choose=choose, stops=stops, pad_id=pad_id, group_size=num_samples,
            proxy=proxy_min_p is not None)
  prompt_mask = prompt_mask.astype(jnp.int32)
  if decode_slots is None or max_new_tokens == 0:
    comp, steps, rows = _decode_fixed(model_config, params, prompts, prompt_mask, rng, **kw)
  else:
    slots = decode_slots or auto_slots(prompts.shape[0] * num_samples)
    comp, steps, rows = _decode_refill(model_config, params, prompts, prompt_mask, rng,
                                       slots=slots, **kw)
  steps = steps.astype(jnp.float32)
  utilisation = comp.mask.sum() / jnp.maximum(steps * rows, 1.0)
  return comp, DecodeStats(decode_steps=steps, slot_utilisation=utilisation)


def auto_slots(num_rows: int) -> int:
  """Rows decoding at once under refill when `decode_slots` is 0: a sixteenth of the
  (prompt, sample) rows, rounded up. Fewer rows fill better but run more loop steps: on a
  2-core CPU (longtail_reverse, 16 prompts x 8, 3 seeds) 8 of 128 rows sampled in 0.57x the
  fixed batch's time at utilisation 0.95 with 4.7x its decode steps, 16 rows 0.59x at 0.85,
  32 rows 0.60x at 0.70 (experiments/results/decode_refill; unmeasured on accelerators, where
  a step's cost depends less on its rows and fewer steps matter more: set decode_slots)."""
  return max(1, -(-num_rows // 16))


def _decode_fixed(c, params, prompts, prompt_mask, rng, *, n, choose, stops, pad_id,
                  group_size, proxy):
  """Every row from the first decode step; the loop exits when all rows are done. Returns
  (completions, int32 loop iterations, rows decoding)."""
  p = prompts.shape[1]
  ends = segment_ends(n, c.cache_segments(n))
  logits, cache = models.prefill(c, params, prompts, prompt_mask, p + ends[0])
  if group_size > 1:
    expand = lambda x: jnp.repeat(x, group_size, axis=0)
    logits, prompt_mask = expand(logits), expand(prompt_mask)
    cache = models.repeat_cache(c, cache, group_size)
  params = models.unstack_layers(c, params)
  b = logits.shape[0]
  next_position_b = prompt_mask.sum(-1)

  uniforms_nb = jax.random.uniform(rng, (n, b), jnp.float32)
  zeros_f = jnp.zeros((b, n), jnp.float32)
  state = dict(i=jnp.int32(0), logits=logits, cache=cache,
               valid=jnp.concatenate([prompt_mask, jnp.zeros((b, ends[0]), jnp.int32)], axis=1),
               done=jnp.zeros((b,), bool), tokens=jnp.full((b, n), pad_id, jnp.int32),
               logprobs=zeros_f, entropies=zeros_f, mask=zeros_f)
  if proxy:
    state["proxy_logprobs"] = zeros_f

  def body(s):
    i = s["i"]
    token, logprob, entropy, *proxy_b = choose(uniforms_nb[i], s["logits"])
    live = ~s["done"]
    token = jnp.where(live, token, pad_id)
    live_f = live.astype(jnp.float32)
    done = s["done"] | jnp.isin(token, jnp.asarray(stops, jnp.int32)) if stops else s["done"]
    valid = s["valid"].at[:, p + i].set(1)
    logits, cache = models.decode_step(c, params, token, next_position_b + i, s["cache"], p + i,
                                       valid)
    out = dict(i=i + 1, logits=logits, cache=cache, valid=valid,
               done=done, tokens=s["tokens"].at[:, i].set(token),
               logprobs=s["logprobs"].at[:, i].set(logprob * live_f),
               entropies=s["entropies"].at[:, i].set(entropy * live_f),
               mask=s["mask"].at[:, i].set(live_f))
    if proxy_b:
      out["proxy_logprobs"] = s["proxy_logprobs"].at[:, i].set(proxy_b[0] * live_f)
    return out

  for j, end in enumerate(ends):
    if j:  # the next segment: the cache grows to hold its tokens
      extra = end - ends[j - 1]
      state = dict(state, cache=models.grow_cache(c, state["cache"], extra),
                   valid=jnp.pad(state["valid"], ((0, 0), (0, extra))))
    cond = ((lambda s, end=end: (s["i"] < end) & ~jnp.all(s["done"])) if stops
            else (lambda s, end=end: s["i"] < end))
    state = jax.lax.while_loop(cond, body, state)
  comp = Completions(tokens=state["tokens"], logprobs=state["logprobs"],
                     entropies=state["entropies"], mask=state["mask"],
                     proxy_logprobs=state.get("proxy_logprobs"))
  return comp, state["i"], b


def _decode_refill(c, params, prompts, prompt_mask, rng, *, n, choose, stops, pad_id,
                   group_size, slots, proxy):
  """In-flight refill: `slots` rows decode at once; when a row is done and (prompt, sample)
  rows still wait, the next waiting row (original order) takes its slot, so slots idle only
  once the queue has run dry. Rows rather than whole groups: a group's slots would wait for
  its longest sample (measured 0.5-0.7 utilisation on longtail_reverse, group size 8).

  Why the tokens equal `_decode_fixed`'s: all b prompts are prefilled at once before the loop
  (the same prefill), and a slot starts output row q by copying prompt q // G's keys/values
  and last logits (`models.load_prompt_rows`); each slot then keeps its own step i_r (cache
  slot p + i_r, RoPE position prompt length + i_r, its own validity), and draws token i_r of
  row q with the uniforms[i_r, q] the fixed batch uses. Outputs are scattered to row q, so the
  layout is the fixed batch's. What differs is the float arithmetic's batch (r rows instead of
  b x G) and the attention length (the whole p + n cache: with rows at different steps the
  cache cannot grow by segments, see `ModelConfig.decode_cache_segments`), so logits agree to
  rounding, not bit for bit.

  Returns (completions [b * G, n], int32 loop iterations, r rows decoding).
  """
  b, p = prompts.shape
  g = group_size
  q = b * g
  r = min(slots, q)
  logits_bv, prompt_cache = models.prefill(c, params, prompts, prompt_mask, p)
  prompt_len_b = prompt_mask.sum(-1)
  params = models.unstack_layers(c, params)
  uniforms_nq = jax.random.uniform(rng, (n, q), jnp.float32)
  rows_r = jnp.arange(r)
  stop_ids = jnp.asarray(stops, jnp.int32)

  def load(s, load_r):
    """The slots where `load_r` start their (new) output row at step 0."""
    source_r = jnp.minimum(s["row"] // g, b - 1)
    valid_rs = jnp.pad(prompt_mask[source_r], ((0, 0), (0, n)))
    return dict(s, cache=models.load_prompt_rows(c, s["cache"], prompt_cache, source_r, load_r),
                logits=jnp.where(load_r[:, None], logits_bv[source_r], s["logits"]),
                valid=jnp.where(load_r[:, None], valid_rs, s["valid"]),
                start=jnp.where(load_r, prompt_len_b[source_r], s["start"]),
                i=jnp.where(load_r, 0, s["i"]), done=s["done"] & ~load_r)

  def refill(s):
    """Every done slot takes the next waiting row, in slot order (a rank by cumulative sum, so
    all slots freed in one step load together); with none left it idles (row q, done). The
    cache copy runs only on iterations where some slot loads."""
    free_r = s["done"]
    take_r = s["queue"] + jnp.cumsum(free_r) - 1
    load_r = free_r & (take_r < q)
    s = dict(s, row=jnp.where(free_r, jnp.where(load_r, take_r, q), s["row"]),
             queue=jnp.minimum(s["queue"] + free_r.sum(), q))
    return jax.lax.cond(load_r.any(), load, lambda s, _: s, s, load_r)

  zeros_f = jnp.zeros((q, n), jnp.float32)
  state = dict(steps=jnp.int32(0), queue=jnp.int32(0), row=jnp.full((r,), q, jnp.int32),
               i=jnp.zeros((r,), jnp.int32), start=jnp.zeros((r,), jnp.int32),
               done=jnp.ones((r,), bool), logits=jnp.zeros((r,) + logits_bv.shape[1:]),
               cache=models.init_cache(c, r, p + n), valid=jnp.zeros((r, p + n), jnp.int32),
               tokens=jnp.full((q, n), pad_id, jnp.int32), logprobs=zeros_f,
               entropies=zeros_f, mask=zeros_f)
  if proxy:
    state["proxy_logprobs"] = zeros_f

  def body(s):
    i_r, row_r = s["i"], s["row"]  # idle slots: row q
    u_r = uniforms_nq[jnp.minimum(i_r, n - 1), jnp.minimum(row_r, q - 1)]
    token, logprob, entropy, *proxy_r = choose(u_r, s["logits"])
    live = ~s["done"]
    token = jnp.where(live, token, pad_id)
    write_r = jnp.where(live, row_r, q)  # finished and idle slots write out of bounds: dropped
    put = lambda buf, x: buf.at[write_r, i_r].set(x, mode="drop")
    done = s["done"] | (i_r + 1 >= n)
    if stops:
      done = done | jnp.isin(token, stop_ids)
    slot_r = p + jnp.minimum(i_r, n - 1)  # a finished row rewrites its last slot: never read
    valid = s["valid"].at[rows_r, slot_r].set(1)
    logits, cache = models.decode_step(c, params, token, s["start"] + i_r, s["cache"], slot_r,
                                       valid)
    s = dict(s, steps=s["steps"] + 1, i=i_r + live, done=done, logits=logits, cache=cache,
             valid=valid, tokens=put(s["tokens"], token), logprobs=put(s["logprobs"], logprob),
             entropies=put(s["entropies"], entropy), mask=put(s["mask"], 1.0))
    if proxy_r:
      s["proxy_logprobs"] = put(s["proxy_logprobs"], proxy_r[0])
    return refill(s)

  state = jax.lax.while_loop(lambda s: ~jnp.all(s["done"]), body, refill(state))
  comp = Completions(tokens=state["tokens"], logprobs=state["logprobs"],
                     entropies=state["entropies"], mask=state["mask"],
                     proxy_logprobs=state.get("proxy_logprobs"))
  return comp, state["steps"], r


def segment_ends(n: int, segments: int) -> list[int]:
  """The decode steps at which each of `segments` cache segments ends (see
  `ModelConfig.decode_cache_segments`): as equal as possible, never empty, the last at n."""
  segments = max(1, min(segments, n))
  return [round(n * (j + 1) / segments) for j in range(segments)]
