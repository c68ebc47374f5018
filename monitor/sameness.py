"""Is this the same story as one already alerted on? The pure half of "one story, one alert".

Two tests, both cheap to keep in Redis (monitor/sightings.py does that):

- **Same address.** ``sameness_url`` reduces a link to what identifies the
  page: no scheme, no ``www.``, no fragment, no tracking parameters, no
  trailing slash, sorted query. Mirrors and re-shares of one page agree.
- **Same text.** The body is cut into shingles of ``k`` words (a Chinese,
  Japanese, Thai, Lao, Khmer or Burmese character counts as a word: those
  scripts put no spaces between words), and a MinHash signature of
  ``NUM_PERM`` values estimates the Jaccard similarity of two shingle sets
  as the share of equal values; with the shingle counts it also estimates
  how much of the smaller text the larger one contains (``containment``).
  ``band_keys`` cut the signature into bands
  of ``BAND_ROWS`` values (locality-sensitive hashing): two stories share a
  band key when they are likely similar, so candidates are found without
  comparing with every earlier story, then verified on the whole signature.

No I/O and no clock here: everything is a plain function of its arguments.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np

from monitor.alerts import Alert, Sighting, alert_id
from monitor.entries import normalise_link
from monitor.text import normalise

NUM_PERM = 128
BAND_ROWS = 2  # 64 bands: a pair at Jaccard 0.3 shares one with p > 0.99
BANDS = NUM_PERM // BAND_ROWS
# Least Jaccard for a containment verdict: 13 of 128 values equal never happens by chance.
CONTAINMENT_FLOOR = 0.1
MAX_TOKENS = 20_000  # a 50 MB "article" must not cost 50 MB of shingles
_CHUNK = 4096  # shingles hashed per numpy step (bounds the temporary array)

# Query parameters that say how a reader arrived, not which page it is.
_TRACKING_PREFIXES = ("utm_", "mc_", "pk_", "ga_", "_ga", "_hs", "hsa_", "at_", "ns_", "oly_")
_TRACKING = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid", "twclid",
    "ocid", "cmpid", "icid", "ref", "ref_src", "smid", "spm", "xtor", "s_cid", "mkt_tok",
    "vero_id", "_openstat",
})  # fmt: skip

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


@dataclass(frozen=True)
class TextSignature:
    """A body's MinHash values and how many distinct shingles it had (for containment)."""

    values: tuple[int, ...]
    shingles: int


@dataclass(frozen=True)
class StoryMark:
    """What identifies a story for sameness: its addresses and its text signature."""

    urls: tuple[str, ...]
    signature: TextSignature | None  # None: text too short (or text test off)


def sameness_url(url: str | None) -> str | None:
    """The part of a URL that names the page, or None when it names no page
    of its own (no host, or a site's front page: some sites point every
    article's rel=canonical there)."""
    if not url or not url.strip():
        return None
    norm = normalise_link(url)
    try:
        parts = urlsplit(norm)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    host = parts.netloc.removeprefix("www.")
    path = parts.path.rstrip("/")
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _tracks(k)]
    query = urlencode(sorted(pairs))
    if not path and not query:
        return None
    return f"//{host}{path}" + (f"?{query}" if query else "")


def _tracks(key: str) -> bool:
    k = key.lower()
    return k in _TRACKING or k.startswith(_TRACKING_PREFIXES)


def story_urls(link: str | None, canonical: str | None) -> tuple[str, ...]:
    """The sameness URLs of a story: its link and its page's canonical URL."""
    found = [u for u in (sameness_url(link), sameness_url(canonical)) if u]
    return tuple(dict.fromkeys(found))


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


def signature(text: str, *, shingle_words: int, min_words: int) -> TextSignature | None:
    """The text's MinHash signature; None when it has fewer than ``min_words``
    words (short texts look alike by chance: a headline is not a story)."""
    words = tokens(text)
    if len(words) < min_words:
        return None
    hashes = shingle_hashes(words, shingle_words)
    return TextSignature(minhash(hashes), len(hashes))


def similarity(a: Sequence[int], b: Sequence[int]) -> float:
    """Estimated Jaccard similarity of the shingle sets behind two signatures."""
    if len(a) != len(b) or not a:
        return 0.0
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def containment(jaccard: float, a: int, b: int) -> float:
    """Estimated share of the smaller shingle set found in the larger one:
    |A∩B| = J(|A|+|B|)/(1+J). A story wrapped in by-lines and share
    buttons, or a short one inside a longer copy, is contained though its
    Jaccard is low."""
    if min(a, b) <= 0:
        return 0.0
    return min(1.0, jaccard / (1 + jaccard) * (a + b) / min(a, b))


def same_story(
    a: TextSignature, b: TextSignature, threshold: float, contained: float | None = None
) -> bool:
    """Jaccard at least ``threshold``, or (when ``contained`` is set) the
    smaller text at least that share inside the larger, with a Jaccard of at
    least ``CONTAINMENT_FLOOR`` so that chance agreements never count."""
    j = similarity(a.values, b.values)
    if j >= threshold:
        return True
    if contained is None or j < CONTAINMENT_FLOOR:
        return False
    return containment(j, a.shingles, b.shingles) >= contained


def band_keys(sig: Sequence[int]) -> list[str]:
    """One key per LSH band: ``<band>:<its values in hex>``."""
    return [
        f"{i}:" + "".join(f"{v:08x}" for v in sig[i * BAND_ROWS : (i + 1) * BAND_ROWS])
        for i in range(len(sig) // BAND_ROWS)
    ]


def to_hex(sig: TextSignature) -> str:
    """Fixed-width form for Redis: the shingle count, then the values, 8 hex
    digits each (the script compares them 8 characters at a time)."""
    return f"{min(sig.shingles, 0xFFFFFFFF):08x}" + "".join(f"{v:08x}" for v in sig.values)


def from_hex(text: str) -> TextSignature:
    values = tuple(int(text[i : i + 8], 16) for i in range(8, len(text), 8))
    return TextSignature(values, int(text[:8], 16))


def also_seen_alert(alert: Alert, first_id: str, sighting: Sighting) -> Alert:
    """The update that attaches this sighting to the rule's first alert for
    the story. Its id is deterministic (rule, this entry, its feed, the
    first alert), so re-delivering it after a crash appends nothing."""
    version = f"also_seen:{first_id}:{sighting.feed}"
    return replace(
        alert,
        alert_id=alert_id(alert.rule, alert.entry_id, version),
        kind="also_seen",
        updates=first_id,
        also_seen=sighting,
    )
