"""Text signatures for sameness: shingles and MinHash (see monitor/sameness.py).

Apart from sameness.py because it needs numpy, which the daemon need not
carry: signatures are computed in the extraction workers (monitor.workers.Task).
No I/O and no clock here: everything is a plain function of its arguments.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from monitor.text import normalise
from monitor.textsig import NUM_PERM, TextSignature

MAX_TOKENS = 20_000  # a 50 MB "article" must not cost 50 MB of shingles
_CHUNK = 4096  # shingles hashed per numpy step (bounds the temporary array)

# Scripts written without spaces between words: each character is a token.
_UNSPACED = (
    "\u0e00-\u0e7f"  # Thai
    "\u0e80-\u0eff"  # Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # CJK compatibility ideographs
)
_TOKEN = re.compile(f"[{_UNSPACED}]|[^\\W{_UNSPACED}]+")


def _seeds() -> tuple[np.ndarray, np.ndarray]:
    """Fixed multiply-add-shift parameters, derived from SHA-256 (not from a
    random generator whose stream may change between numpy versions): stored
    signatures must stay comparable across releases and restarts."""
    a, b = [], []
    for i in range(NUM_PERM):
        d = hashlib.sha256(f"feed-monitor minhash {i}".encode()).digest()
        a.append(int.from_bytes(d[:8], "little") | 1)  # odd multiplier
        b.append(int.from_bytes(d[8:16], "little"))
    return np.array(a, dtype=np.uint64)[:, None], np.array(b, dtype=np.uint64)[:, None]


_A, _B = _seeds()


def tokens(text: str) -> list[str]:
    """Case- and width-folded words; one token per character in unspaced scripts."""
    return _TOKEN.findall(normalise(text))[:MAX_TOKENS]


def shingle_hashes(words: Sequence[str], k: int) -> np.ndarray:
    """32-bit hashes of the distinct runs of ``k`` consecutive words."""
    if not words:
        return np.zeros(0, dtype=np.uint64)
    runs = {"\x1f".join(words[i : i + k]) for i in range(max(1, len(words) - k + 1))}
    hashes = {
        int.from_bytes(hashlib.blake2b(r.encode("utf-8", "surrogatepass"), digest_size=4).digest())
        for r in runs
    }
    return np.array(sorted(hashes), dtype=np.uint64)


def minhash(hashes: np.ndarray) -> tuple[int, ...]:
    """MinHash over multiply-add-shift hash functions (mod 2^64, top 32 bits)."""
    low = np.full(NUM_PERM, 2**32, dtype=np.uint64)
    for start in range(0, len(hashes), _CHUNK):
        chunk = hashes[None, start : start + _CHUNK]
        low = np.minimum(low, ((_A * chunk + _B) >> np.uint64(32)).min(axis=1))
    return tuple(int(v) for v in low)


def signature(text: str, shingle_words: int, min_words: int) -> TextSignature | None:
    """The text's MinHash signature; None when it has fewer than ``min_words``
    words (short texts look alike by chance: a headline is not a story)."""
    words = tokens(text)
    if len(words) < min_words:
        return None
    hashes = shingle_hashes(words, shingle_words)
    return TextSignature(minhash(hashes), len(hashes))
