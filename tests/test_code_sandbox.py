"""The code sandbox against hostile programs: each attack is provoked, then we check that nothing
escaped, that the answer came within timeout + 1 s, and that a normal program still runs.

Most tests run on the strongest isolation the machine allows ("namespaces" as root here); the
"rlimits" fallback gets the attacks it claims to stop.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from rlvr_jax.rewards import code

TIMEOUT_S = 1.0
SLACK_S = 1.0


@pytest.fixture(scope="module", params=["auto", "rlimits"])
def sandbox(request):
  box = code.Sandbox(request.param)
  yield box
  box.close()


@pytest.fixture(scope="module")
def strong():
  box = code.Sandbox()
  if box.isolation != "namespaces":
    box.close()
    pytest.skip(f"namespaces refused here (isolation {box.isolation!r}); needs root")
  yield box
  box.close()


def timed_run(box: code.Sandbox, program: str, **kwargs) -> code.Result:
  kwargs.setdefault("timeout_s", TIMEOUT_S)
  start = time.monotonic()
  result = code.run(program, sandbox=box, **kwargs)
  elapsed = time.monotonic() - start
  assert elapsed < kwargs["timeout_s"] + SLACK_S, (elapsed, result)
  assert len(result.stdout) <= code.DEFAULT_OUTPUT_BYTES
  assert len(result.stderr) <= code.DEFAULT_OUTPUT_BYTES
  return result


def still_works(box: code.Sandbox) -> None:
  assert timed_run(box, "print(6 * 7)").stdout == "42\n"


def processes_with(marker: str) -> list[int]:
  """Pids whose command line contains `marker` (we are root: every process is listed)."""
  found = []
  for name in os.listdir("/proc"):
    if name.isdigit():
      try:
        with open(f"/proc/{name}/cmdline", "rb") as f:
          if marker.encode() in f.read():
            found.append(int(name))
      except OSError:
        pass
  return found


# --- normal programs --------------------------------------------------------------------------
def test_stdin_round_trip(sandbox):
  result = timed_run(sandbox, "import sys\nprint(sys.stdin.read()[::-1], end='')", stdin="abc\n")
  assert (result.returncode, result.stdout, result.timed_out) == (0, "\ncba", False)
  assert result.isolation in ("namespaces", "rlimits") and result.ok


def test_imports_the_standard_library(sandbox, strong):
  result = timed_run(sandbox, "import typing, math\nprint(math.comb(4, 2))")
  assert result.stdout == "6\n", result
  # statistics is not preloaded by the template: it is read from disk as the program's uid,
  # even when the interpreter lives under a home only root may enter.
  result = timed_run(strong, "import statistics, fractions\nprint(statistics.mean([1, 2]))")
  assert result.stdout == "1.5\n", result


def test_random_differs_between_programs(sandbox):
  draws = {timed_run(sandbox, "import random\nprint(random.random())").stdout for _ in range(3)}
  assert len(draws) == 3


def test_large_stdin_and_exit_code(sandbox):
  data = "x" * 300_000
  result = timed_run(sandbox, "import sys\nprint(len(sys.stdin.read()))\nsys.exit(3)", stdin=data)
  assert (result.returncode, result.stdout, result.ok) == (3, "300000\n", False)


def test_syntax_error_and_exception(sandbox):
  result = timed_run(sandbox, "def f(:\n  pass")
  assert result.returncode == 1 and "SyntaxError" in result.stderr
  result = timed_run(sandbox, "raise ValueError('nope')")
  assert result.returncode == 1 and "ValueError: nope" in result.stderr
  assert "_sandbox" not in result.stderr  # the traceback starts at the program


def test_timeout_flagged(sandbox):
  result = timed_run(sandbox, "while True:\n  pass")
  assert result.timed_out and result.returncode == -9 and not result.ok


def test_passes_humaneval_style(sandbox):
  tests = "def check(candidate):\n  assert candidate(2, 3) == 5\n"
  assert code.passes("def add(a, b):\n  return a + b\n", tests, "add", sandbox=sandbox)
  assert not code.passes("def add(a, b):\n  return a - b\n", tests, "add", sandbox=sandbox)
  assert not code.passes("def add(a, b):\n  while True: pass\n", tests, "add", timeout_s=0.5,
                         sandbox=sandbox)


def test_run_many_keeps_order():
  results = code.run_many([f"print({i})" for i in range(6)], workers=3, timeout_s=2.0)
  assert [r.stdout for r in results] == [f"{i}\n" for i in range(6)]
  assert code.passes_many(["def f():\n  return 1\n"] * 2,
                          ["def check(c):\n  assert c() == 1\n", "def check(c):\n  assert c() == 2\n"],
                          ["f", "f"], workers=2, timeout_s=2.0) == [True, False]


def test_arguments_are_checked():
  with pytest.raises(ValueError, match="timeout_s"):
    code.run("pass", timeout_s=0)
  with pytest.raises(ValueError, match="memory_mb"):
    code.run("pass", memory_mb=1)
  with pytest.raises(ValueError, match="entry_point"):
    code.humaneval_program("", "", "f); import os; (")
  with pytest.raises(ValueError, match="isolation"):
    code.Sandbox("none")


# --- hostile programs: every isolation level ----------------------------------------------------
def test_infinite_output_is_capped(sandbox):
  for stream in ("stdout", "stderr"):
    result = timed_run(sandbox, f"import sys\nwhile True:\n  sys.{stream}.write('x' * 65536)",
                       timeout_s=2.0)
    assert result.truncated and not result.ok
    assert len(getattr(result, stream)) == code.DEFAULT_OUTPUT_BYTES
  still_works(sandbox)


def test_memory_bomb(sandbox):
  result = timed_run(sandbox, "x = bytearray(8 << 30)", memory_mb=256)
  assert result.returncode == 1 and "MemoryError" in result.stderr
  result = timed_run(sandbox, "x = []\nwhile True:\n  x.append(bytearray(1 << 20))", memory_mb=256)
  assert not result.ok
  still_works(sandbox)


def test_environment_does_not_leak(sandbox, monkeypatch):
  secret = f"secret-{uuid.uuid4()}"
  monkeypatch.setenv("RLVR_SANDBOX_SECRET", secret)
  program = ("import os\nprint(dict(os.environ))\n"
             f"for p in ('/proc/{os.getpid()}/environ', '/proc/self/environ', '/proc/1/environ'):\n"
             "  try:\n    print(open(p, 'rb').read())\n  except OSError as e:\n    print(e)\n")
  result = timed_run(sandbox, program)
  assert secret not in result.stdout + result.stderr
  assert "RLVR_SANDBOX_SECRET" not in result.stdout + result.stderr


def test_cannot_signal_us(sandbox):
  program = ("import os, signal\n"
             f"for pid in (os.getppid(), {os.getpid()}, -1, 0):\n"
             "  try:\n    os.kill(pid, signal.SIGKILL)\n  except (OSError, PermissionError) as e:\n"
             "    print(pid, e)\n")
  timed_run(sandbox, program)
  still_works(sandbox)  # the template and this process are alive


def test_no_network(sandbox):
  listener = socket.socket()
  listener.bind(("127.0.0.1", 0))
  listener.listen(8)
  listener.setblocking(False)
  port = listener.getsockname()[1]
  program = ("import socket\n"
             f"for host in ('127.0.0.1', 'localhost', '::1'):\n"
             "  try:\n"
             f"    socket.create_connection((host, {port}), timeout=0.5)\n"
             "    print('connected', host)\n"
             "  except Exception as e:\n    print(host, type(e).__name__)\n")
  result = timed_run(sandbox, program)
  assert "connected" not in result.stdout, result
  with pytest.raises(BlockingIOError):
    listener.accept()
  listener.close()


# --- hostile programs: what only namespaces (and our uid change) stop -----------------------------
def test_fork_bomb(strong):
  marker = f"forkbomb-{uuid.uuid4()}"
  python_bomb = "import os\nwhile True:\n  try:\n    os.fork()\n  except OSError:\n    pass\n"
  result = timed_run(strong, python_bomb, max_processes=8)
  assert result.timed_out
  # The shell's forks keep its command line, so the marker finds every one of them.
  shell_bomb = f"import os\nos.execv('/bin/sh', ['sh', '-c', 'f() {{ f | f & }}; f; sleep 30', {marker!r}])"
  # It times out, or ends early when the shell cannot fork its final `sleep`; either way no
  # process of it may survive.
  timed_run(strong, shell_bomb, max_processes=8)
  assert processes_with(marker) == []
  still_works(strong)


def test_no_survivors(strong):
  marker = f"daemon-{uuid.uuid4()}"
  sleeper = f"import os, sys\nos.execv('/bin/sleep', ['sleep', '30', {marker!r}])"
  daemonize = ("import os, sys\n"
               "if os.fork() == 0:\n  os.setsid()\n  if os.fork() == 0:\n"
               f"    exec({sleeper!r})\n  os._exit(0)\n")
  assert timed_run(strong, daemonize + "print('parent done')").stdout == "parent done\n"
  assert processes_with(marker) == []
  assert timed_run(strong, daemonize + "import time\ntime.sleep(60)").timed_out
  assert processes_with(marker) == []


def test_files_outside_stay_untouched(strong, tmp_path):
  shared = tmp_path / "world_writable"
  shared.mkdir()
  shared.chmod(0o777)
  secret = tmp_path / "root_only.txt"
  secret.write_text("top secret")
  secret.chmod(0o600)
  targets = [str(shared / "escaped.txt"), "/escaped.txt", "/var/tmp/escaped.txt",
             "/dev/shm/escaped.txt", "/tmp/escaped.txt"]
  program = ("import os\n"
             f"for path in {targets!r}:\n"
             "  try:\n    open(path, 'w').write('x')\n    print('wrote', path)\n"
             "  except OSError as e:\n    print(path, e)\n"
             f"for path in ({str(secret)!r}, '/etc/shadow'):\n"
             "  try:\n    print(open(path).read())\n  except OSError as e:\n    print(path, e)\n"
             "open('here.txt', 'w').write('mine')\nprint(os.listdir('.'))\n")
  result = timed_run(strong, program)
  assert "top secret" not in result.stdout
  for path in targets:
    assert not os.path.exists(path), path
  assert "here.txt" in result.stdout  # its own directory is writable...
  assert "here.txt" not in timed_run(strong, "import os\nprint(os.listdir('.'))").stdout  # ...and new


def test_sees_only_its_own_processes(strong):
  result = timed_run(strong, "import os\nprint(os.getpid(), sorted(int(p) for p in os.listdir('/proc') "
                             "if p.isdigit()))")
  assert result.stdout == "1 [1]\n"


def test_template_dies_with_its_owner(tmp_path):
  script = ("import sys\nfrom rlvr_jax.rewards import code\nbox = code.Sandbox()\n"
            "print(box.isolation, box._template.process.pid, flush=True)\n"
            "import os\nos.kill(os.getpid(), 9)\n")
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
  template_pid = int(out.stdout.split()[1])
  deadline = time.monotonic() + 5
  while time.monotonic() < deadline:
    try:
      os.kill(template_pid, 0)
      with open(f"/proc/{template_pid}/stat") as f:
        if f.read().split()[2] == "Z":
          break
    except ProcessLookupError:
      break
    time.sleep(0.1)
  else:
    pytest.fail(f"template {template_pid} outlived its owner")
