"""Per-cell seeds: every cell of a study draws from its own generator, seeded from (seed, cell)."""
from __future__ import annotations

import hashlib
import json


def cell_seed(seed: int, *parts) -> int:
    """A stable 56-bit seed from the run's seed and the parts naming a cell (any JSON-able values)."""
    blob = json.dumps([seed, *parts], sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:7], "little")
