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

Signatures are computed by monitor/minhash.py (numpy), in the workers.
No I/O and no clock here: everything is a plain function of its arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, urlencode, urlsplit

from monitor.alerts import Alert, Sighting, alert_id
from monitor.entries import normalise_link
from monitor.textsig import NUM_PERM, TextSignature

BAND_ROWS = 2  # 64 bands: a pair at Jaccard 0.3 shares one with p > 0.99
BANDS = NUM_PERM // BAND_ROWS
# Least Jaccard for a containment verdict: 13 of 128 values equal never happens by chance.
CONTAINMENT_FLOOR = 0.1

# Query parameters that say how a reader arrived, not which page it is.
_TRACKING_PREFIXES = ("utm_", "mc_", "pk_", "ga_", "_ga", "_hs", "hsa_", "at_", "ns_", "oly_")
_TRACKING = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid", "twclid",
    "ocid", "cmpid", "icid", "ref", "ref_src", "smid", "spm", "xtor", "s_cid", "mkt_tok",
    "vero_id", "_openstat",
})  # fmt: skip


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
