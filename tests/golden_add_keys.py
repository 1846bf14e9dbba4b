"""A pytest plugin that adds new metric keys to the goldens, and changes nothing else.

    GOLDEN_ADD_KEYS=decode_slot_utilisation python -m pytest -p tests.golden_add_keys \
        -p no:xdist tests/test_bit_for_bit.py tests/test_ablation_*.py

Replaces `tests.helpers.assert_matches_golden`: every recorded run must have the same rows, and
every recorded key of every row the same value (`==`, as the plain check); the new rows may add
only the keys named in GOLDEN_ADD_KEYS, whose values are then written into the golden file
(rows keep their key order, sorted as recorded). A metric added to metrics.jsonl thus enters
the goldens without re-recording any old value (tests/golden/README.md).
"""

import json
import os

from tests import helpers


def _add_keys(name: str, runs: dict[str, list[dict]], only: list[str] | None = None) -> None:
  added = set(filter(None, os.environ.get("GOLDEN_ADD_KEYS", "").split(",")))
  path = os.path.join(helpers.GOLDEN_DIR, f"{name}.json")
  with open(path, encoding="utf-8") as f:
    golden = json.load(f)
  recorded = golden["runs"]
  assert set(only if only is not None else recorded) == runs.keys(), (name, sorted(runs))
  for run, new_rows in runs.items():
    old_rows = recorded[run]
    assert len(old_rows) == len(new_rows), (name, run, len(old_rows), len(new_rows))
    for i, (old, new) in enumerate(zip(old_rows, new_rows)):
      extra = new.keys() - old.keys()
      assert old.keys() <= new.keys() and extra <= added, (name, run, i, sorted(extra))
      for k in old:
        assert old[k] == new[k], (name, run, i, k, old[k], new[k])
      old.update({k: new[k] for k in extra})
      recorded[run][i] = dict(sorted(old.items()))
  with open(path, "w", encoding="utf-8") as f:
    json.dump(golden, f, indent=1, sort_keys=False)
    f.write("\n")


def pytest_configure(config):
  del config
  helpers.assert_matches_golden = _add_keys
