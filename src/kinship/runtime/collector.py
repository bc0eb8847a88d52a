"""Python's cyclic garbage collector: what a served process has built at start is taken out of its scans.

A full (oldest-generation) collection walks every tracked object, and holds the GIL while
it does: in the embedder, 76k objects after the model pack loads, 22-29 ms on a quiet core,
several times that while the workers keep both cores busy. Every call in flight stalls for
that long; under overload the refusals that arrive meanwhile all wait for it (measured as a
run of refusals that end at the same instant, docs/benchmarks.md, "Costs behind the defaults"). Objects built at start
(modules, models, stubs, settings) live as long as the process, so scanning them finds
nothing: `gc.freeze()` moves them to a permanent generation that collections skip, and a
full collection then walks only what requests made since.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collects once, then moves every surviving object out of the collector's scans; returns how many."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
