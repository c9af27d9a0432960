"""Recompute an accelerator job's result on the board side (the checker that catches silent data corruption).

Implements the recipe published in docs/protocol.md (section "Event accel.job.done"): a board author
would write exactly this from the document, without reading the emulator.
"""

from __future__ import annotations

import hashlib

import numpy as np

RESULT_DIM = 16
SALT = {"inference": 1, "training": 2}
_M64 = (1 << 64) - 1


def expected_result(seed: int, kind: str, n: int = RESULT_DIM) -> np.ndarray:
    k = np.arange(1, 2 * n * n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (np.uint64(seed & _M64) * np.uint64(6364136223846793005)
             + k * np.uint64(1442695040888963407) + np.uint64(SALT[kind]))
        x = x ^ (x >> np.uint64(29))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
    v = ((x >> np.uint64(40)) % np.uint64(255)).astype(np.int64) - 127
    a = v[: n * n].reshape(n, n)
    b = v[n * n:].reshape(n, n)
    return np.maximum(a @ b, 0).astype(np.int32)


def digest_of(result: np.ndarray) -> str:
    return hashlib.sha256(result.astype("<i4").tobytes()).hexdigest()


def check_job(done: dict) -> bool:
    """True if the reported digest matches the recomputed one."""
    if not done.get("ok") or done.get("digest") is None:
        return True
    return digest_of(expected_result(int(done["seed"]), str(done["kind"]))) == done["digest"]
