"""Two RL steps on 8 forced CPU devices (fsdp x tensor) match the 1-device run."""

import os
import subprocess
import sys
import textwrap

from tests.helpers import ROOT

SCRIPT = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, numpy as np
    from rlvr_jax.training.run import Run
    from tests.helpers import load_config

    assert jax.device_count() == 8
    results = {}
    for name, mesh, devices in [("one", dict(data=1, fsdp=1, tensor=1), jax.devices()[:1]),
                                ("eight", dict(data=1, fsdp=4, tensor=2), jax.devices())]:
      config = load_config()
      config.mesh.update(mesh)
      config.algorithm.advantage = "nsr"   # non-zero gradients from an untrained policy
      config.algorithm.terms.kl = dict(coef=0.01)
      config.model.update(n_heads=4, n_kv_heads=2, d_model=32, d_ff=64)
      run = Run(config, devices)
      state = run.make_state(run.init_params(), run.rl_optimizer, with_reference=True)
      step = run.compile_step(run._rl_step, state, with_rng=True)
      it = iter(run.dataset("train", config.rl.batch_size, seed=0, shuffle=True, size=100))
      for i in range(2):
        state, m = step(state, run.device_batch(next(it)), jax.random.key(i))
      if name == "eight":
        specs = {str(x.sharding.spec) for x in jax.tree.leaves(state.params)}
        assert any("tensor" in s for s in specs) and any("fsdp" in s for s in specs), specs
      results[name] = jax.tree.map(np.asarray, state.params)
    worst = max(float(np.max(np.abs(a - b))) for a, b in
                zip(jax.tree.leaves(results["one"]), jax.tree.leaves(results["eight"])))
    print("max_abs_diff", worst)
    assert worst < 1e-5, worst
""")


def test_fsdp_tensor_sharded_steps_match_single_device():
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  assert "max_abs_diff" in proc.stdout
