"""Bad configs stop before compiling with one message naming the field."""

import ast
import os
import re
import subprocess
import sys

import pytest

from rlvr_jax import configs_base
from rlvr_jax.checkpoints import extras
from rlvr_jax.training.run import Run
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
    Run(config)


def test_padded_vocabulary_rounds_up_and_masks_the_padding():
  config = load_config()
  config.model.update(vocab_size=0, vocab_multiple=128)
  run = Run(config)
  c = run.model_config
  assert c.vocab_size == 128 and c.valid_vocab_size == run.tokenizer.vocab_size < 128
  config = load_config()
  config.model.update(vocab_size=300, vocab_multiple=128)
  assert Run(config).model_config.vocab_size == 384


def test_batch_not_divisible_by_mesh():
  config = load_config()
  config.mesh.data = 2
  with pytest.raises(ValueError, match="config.mesh"):
    Run(config)  # one CPU device cannot hold a 2-way data axis


def _main(*args, workdir, module="rlvr_jax.main", hide_module=None, prelude=""):
  """Runs a CLI on the tiny quickstart; `hide_module` makes that module look uninstalled;
  `prelude` is Python run in the CLI's process first."""
  argv = [module, "--config=configs/quickstart.py:tiny", f"--workdir={workdir}", "--noprogress",
          *args]
  code = "; ".join(filter(None, [
      "import runpy, sys", f"sys.modules[{hide_module!r}] = None" if hide_module else "",
      prelude, f"sys.argv = {argv!r}",
      f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"]))
  cmd = ([sys.executable, "-c", code] if hide_module or prelude
         else [sys.executable, "-m", *argv])
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _files(directory) -> dict[str, bytes]:
  return {str(p.relative_to(directory)): p.read_bytes()
          for p in sorted(directory.rglob("*")) if p.is_file()}


def _earlier_run(tmp_path):
  """A workdir holding an earlier run's files, which a failing command must leave as they were."""
  workdir = tmp_path / "run"
  (workdir / "checkpoints" / "2").mkdir(parents=True)
  (workdir / "config.json").write_text('{"seed": 0}\n')
  (workdir / "metrics.jsonl").write_text('{"phase": "rl", "step": 2}\n')
  (workdir / "checkpoints" / "2" / "state").write_bytes(b"\x00weights")
  return workdir, _files(workdir)


def _one_error_line(proc, *parts: str) -> str:
  """The command failed with status 1 and one `error:` line holding `parts`, no traceback."""
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert len(lines) == 1, proc.stderr[-3000:]
  for part in parts:
    assert part in lines[0], lines[0]
  return lines[0]


@pytest.mark.parametrize("module", ["rlvr_jax.main", "rlvr_jax.evaluate"])
def test_unknown_override_key_is_one_line_with_the_nearest_field(tmp_path, module):
  workdir, before = _earlier_run(tmp_path)
  proc = _main("--config.rl.grop_size=4", workdir=workdir, module=module)
  _one_error_line(proc, "config.rl.grop_size: is not a field of the run config (did you mean "
                  "'rl.group_size'?)")
  assert _files(workdir) == before


def test_unknown_override_names_the_missing_group(tmp_path):
  proc = _main("--config.rll.steps=3", "--config.task.kwargs.digits=2", workdir=tmp_path / "w")
  _one_error_line(proc, "--config.rll.steps: config has no field 'rll'; did you mean config.rl?")
  assert not (tmp_path / "w").exists()


def test_rl_only_field_fails_before_sft(tmp_path):
  workdir, before = _earlier_run(tmp_path)
  proc = _main("--config.algorithm.terms.kl={'coef': 0.1, 'kind': 'k9'}", workdir=workdir)
  _one_error_line(proc, "config.algorithm.terms.kl: term 'kl': 'kind' must be one of "
                  "('k1', 'k2', 'k3', 'abs')")
  assert _files(workdir) == before  # no SFT metrics, no checkpoint 0


@pytest.mark.parametrize("inside", [False, True])
def test_workdir_that_is_a_file(tmp_path, inside):
  blocker = tmp_path / "run"
  blocker.write_bytes(b"notes of an earlier run\n")
  proc = _main(workdir=blocker / "sub" if inside else blocker)
  _one_error_line(proc, f"cannot be created: {blocker} is not a directory" if inside
                  else "exists and is not a directory")
  assert blocker.read_bytes() == b"notes of an earlier run\n"


def test_unwritable_workdir(tmp_path):
  """A read-only workdir (0o500). Root writes there anyway, so as root the CLI's process is told
  what any other user's would be: os.access denies writing under the workdir (nothing else)."""
  workdir, before = _earlier_run(tmp_path)
  prelude = ""
  if os.geteuid() == 0:
    prelude = ("import os; _access = os.access; os.access = lambda p, m, **kw: (not m & os.W_OK "
               f"or not os.path.abspath(p).startswith({str(workdir)!r})) and _access(p, m, **kw)")
  workdir.chmod(0o500)
  try:
    proc = _main(workdir=workdir, prelude=prelude)
    proc_new = _main(workdir=workdir / "new", prelude=prelude)
  finally:
    workdir.chmod(0o700)
  _one_error_line(proc, f"{workdir} is not writable")
  _one_error_line(proc_new, f"not writable (it would be created in {workdir})")
  assert _files(workdir) == before


@pytest.mark.parametrize("config_json,message", [
    (None, "config.json: missing; an HF checkpoint directory needs config.json"),
    ('{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 32}',
     "config.json: incomplete, lacks vocab_size, num_hidden_layers, num_attention_heads, "
     "intermediate_size"),
    ('{"architectures": ["Qwen2ForCausalLM"], ', "config.json: not valid UTF-8 JSON"),
])
def test_hf_directory_with_a_bad_config_json(tmp_path, config_json, message):
  checkpoint = tmp_path / "ckpt"
  checkpoint.mkdir()
  (checkpoint / "tokenizer.json").write_text("{}")
  if config_json is not None:
    (checkpoint / "config.json").write_text(config_json)
  checkpoint_files = _files(checkpoint)
  workdir, before = _earlier_run(tmp_path)
  proc = _main("--config.init.kind=hf", f"--config.init.path={checkpoint}", workdir=workdir)
  _one_error_line(proc, f"{checkpoint}/{message}")
  assert _files(workdir) == before and _files(checkpoint) == checkpoint_files


@pytest.mark.parametrize("kind,module", [("hf", "safetensors"), ("gguf", "gguf")])
def test_checkpoint_kind_without_its_extra_names_the_extra(tmp_path, kind, module):
  checkpoint = tmp_path / "model"
  checkpoint.mkdir()
  workdir, before = _earlier_run(tmp_path)
  proc = _main(f"--config.init.kind={kind}", f"--config.init.path={checkpoint}", workdir=workdir,
               hide_module=module)
  _one_error_line(proc, f"config.init.kind='{kind}' needs the [{kind}] extra: pip install "
                  f"'rlvr_jax[{kind}]' (not installed: {module})")
  assert _files(workdir) == before


def test_extras_list_what_setup_py_installs():
  tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
  lists = {node.targets[0].id: [re.split(r"[<>=\[]", elt.value)[0].lower()
                                for elt in node.value.elts]
           for node in tree.body
           if isinstance(node, ast.Assign) and isinstance(node.value, ast.List)}
  for kind, modules in extras.MODULES.items():
    assert set(modules) <= set(lists[kind.upper()]), (kind, lists[kind.upper()])


def test_empty_data_file_fails_when_the_run_is_built(tmp_path):
  empty = tmp_path / "train.jsonl"
  empty.write_bytes(b"")
  config = load_config()
  config.task.name = "gsm8k"
  config.task.kwargs = dict(train_path=str(empty))
  with pytest.raises(ValueError, match=rf"^{re.escape(str(empty))}:1: no rows"):
    Run(config)
  assert empty.read_bytes() == b""


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
