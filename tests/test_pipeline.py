"""grain input pipeline: fixed-shape encoding, demonstrations only where SFT needs them."""

import numpy as np
import pytest

from rlvr_jax.data import pipeline, synthetic

TASK = synthetic.make_task("addition", digits=3, scratchpad=True)
TOKENIZER = synthetic.build_tokenizer([TASK])


def test_encode_left_pads_prompts_and_right_pads_demos():
  shapes = pipeline.task_shapes(TASK, TOKENIZER)
  example = TASK.example(0, split="train", seed=0)
  out = pipeline.encode_example(example, TOKENIZER, shapes)
  prompt = TOKENIZER.encode(example.prompt)
  assert out["prompt_ids"].shape == (shapes.prompt_len,)
  np.testing.assert_array_equal(out["prompt_ids"][-len(prompt):], prompt)
  assert out["prompt_mask"].sum() == len(prompt) and out["prompt_mask"][-1] == 1
  demo = TOKENIZER.encode(example.demo) + [TOKENIZER.eos_id]
  np.testing.assert_array_equal(out["demo_ids"][:len(demo)], demo)
  assert out["demo_mask"].sum() == len(demo) and out["demo_mask"][0] == 1
  assert TOKENIZER.decode(out["answer_ids"][out["answer_ids"] != TOKENIZER.pad_id]) == (
      example.answer)


def test_rl_batches_need_no_room_for_demonstrations():
  full = pipeline.task_shapes(TASK, TOKENIZER)
  short = pipeline.Shapes(full.prompt_len, 4, full.answer_len, full.meta_size)
  example = next(e for e in (TASK.example(i, split="train", seed=0) for i in range(100))
                 if len(e.demo) > 4)
  out = pipeline.encode_example(example, TOKENIZER, short, with_demo=False)
  assert "demo_ids" not in out and "demo_mask" not in out
  with pytest.raises(ValueError, match=r"demonstration \+ EOS has \d+ tokens, more than the "
                                       r"configured 4.*raise the matching data length"):
    pipeline.encode_example(example, TOKENIZER, short)


def test_dataset_batches_have_fixed_shapes_and_resume_from_iterator_state():
  shapes = pipeline.task_shapes(TASK, TOKENIZER)
  source = pipeline.TaskSource(TASK, "train", 0, 1000)
  ds = pipeline.make_dataset(source, TOKENIZER, shapes, 8, seed=3, with_demo=False)
  it = iter(ds)
  first = [next(it) for _ in range(3)]
  assert set(first[0]) == {"prompt_ids", "prompt_mask", "answer_ids", "meta"}
  assert first[0]["prompt_ids"].shape == (8, shapes.prompt_len)
  state = it.get_state()
  expected = next(it)
  it2 = iter(ds)
  it2.set_state(state)
  resumed = next(it2)
  for k in expected:
    np.testing.assert_array_equal(resumed[k], expected[k])
