"""freeze_startup_objects: what start-up built leaves the collector's scans; what requests make later does not."""

from __future__ import annotations

import subprocess
import sys

# In a child process: freezing is process-wide and this test process keeps collecting normally.
CHILD = """
import gc, json
from kinship.runtime.collector import freeze_startup_objects
startup = [[i] for i in range(50_000)]  # what a service builds at start (lists: always tracked)
frozen = freeze_startup_objects()
oldest_after_freeze = len(gc.get_objects(generation=2))
later = [[i] for i in range(1_000)]  # what a request makes afterwards
gc.collect()
print(json.dumps({"frozen": frozen, "oldest_after_freeze": oldest_after_freeze,
                  "oldest_after_requests": len(gc.get_objects(generation=2)), "alive": len(startup)}))
"""


def test_startup_objects_leave_the_scans_and_later_ones_are_still_collected():
    import json

    out = json.loads(subprocess.run([sys.executable, "-c", CHILD], check=True, capture_output=True, text=True).stdout)
    assert out["frozen"] >= 50_000  # the start-up objects (and the interpreter's own) are frozen
    assert out["oldest_after_freeze"] == 0  # a full collection now walks nothing built at start
    assert 1_000 <= out["oldest_after_requests"] < 5_000  # later objects are tracked and scanned as usual
    assert out["alive"] == 50_000  # freezing keeps objects alive, it frees nothing
