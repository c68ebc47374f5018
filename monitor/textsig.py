"""What a text signature is, apart from how it is made (monitor/minhash.py)
and how stories are compared with it (monitor/sameness.py): the workers
that compute signatures import this, and nothing of the daemon."""

from __future__ import annotations

from dataclasses import dataclass

NUM_PERM = 128  # MinHash values per signature


@dataclass(frozen=True)
class TextSignature:
    """A body's MinHash values and how many distinct shingles it had (for containment)."""

    values: tuple[int, ...]
    shingles: int
