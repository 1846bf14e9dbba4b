"""A gradient-free pass over a rollout in `chunks` pieces (`rl.frozen_pass_chunks`).

The behaviour, reference and critic passes of `rollout.advantages` read every completion of the
step at once: with hundreds of samples a prompt (BroRL) their activations over B·G rows are the
step's largest buffer (benchmarks/MEMORY.md, "Hundreds of samples a prompt"). In chunks only one
chunk's activations exist at a time (`lax.map`, a sequential loop). Chunk i holds samples
[i·G/c, (i+1)·G/c) of every prompt, so each chunk reads all b prompt rows once and a batch
sharded over prompts stays sharded the same way in every chunk. Each row's result is the same
function of that row; only the float arithmetic's batch differs.

Shapes: b prompts (one row a group), G completions each (consecutive rows), n = b·G rows,
c chunks, k = G / c samples of each prompt a chunk.
"""

from __future__ import annotations

from typing import Callable

import jax

Array = jax.Array


def map_row_chunks(fn: Callable[..., Array], prompt_ids: Array, prompt_mask: Array,
                   per_row: tuple[Array, ...], chunks: int) -> Array:
  """fn(prompt_ids, prompt_mask, *per_row) computed in `chunks` pieces.

  Args:
    fn: (prompt ids [b, p], prompt mask [b, p], *arrays [b·k, ...]) -> [b·k, ...], one prompt
      row per k consecutive completion rows (`forward.completion_logprobs` reads k from the
      shapes).
    prompt_ids, prompt_mask: [b, p], one row a group.
    per_row: arrays [n, ...] of the n = b·G completion rows, each group's G rows consecutive.
    chunks: c, dividing G (`configs_base` checks it, naming `rl.frozen_pass_chunks`); 1: one
      call over every row (the unchunked program).

  Returns fn's output [n, ...], rows in the input's order.
  """
  if chunks == 1:
    return fn(prompt_ids, prompt_mask, *per_row)
  b, n = prompt_ids.shape[0], per_row[0].shape[0]
  g = n // b
  if g % chunks:
    raise ValueError(f"{chunks} chunks do not divide a group of {g} rows")
  k = g // chunks

  def split(x):  # [b·G, ...] -> [c, b·k, ...]: chunk i = samples i·k .. (i+1)·k − 1 of each
    x = x.reshape((b, chunks, k) + x.shape[1:]).swapaxes(0, 1)
    return x.reshape((chunks, b * k) + x.shape[3:])

  out = jax.lax.map(lambda xs: fn(prompt_ids, prompt_mask, *xs), tuple(map(split, per_row)))
  out = out.reshape((chunks, b, k) + out.shape[2:]).swapaxes(0, 1)
  return out.reshape((n,) + out.shape[3:])
