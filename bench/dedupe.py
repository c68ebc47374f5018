"""Does "one story, one alert" catch re-publications without merging distinct stories?

Reads real article texts in place (never copied): the 546 stories of
../shared/data/articles/candidates.jsonl (13 languages) and the 181 true
article bodies of ../shared/data/extraction/scrapinghub-article-extraction-
benchmark/ground-truth.json. Each text is one distinct story.

For every story the bench builds synthetic re-publications (seeded, so runs
agree):

- ``headline``: the same text under a new headline line, at a new URL;
- ``trimmed``: the first 70-90% of the text (the end cut), at a new URL;
- ``boilerplate``: a by-line and share/newsletter lines (written for this
  bench) added at the start and end, at a new URL;
- ``all``: new headline, trimmed and boilerplate together, at a new URL;
- ``tracking``: the same text at the same address with tracking parameters,
  ``www.`` and a fragment added.

A duplicate is caught when the method calls the copy the same story as its
original. Distinct stories are all pairs of different originals (same topic
included: many are about China and Russia); a pair is wrongly merged when
the method calls them the same story. The MinHash method is measured as the
daemon runs it: a pair is compared only when it shares an LSH band key.

Baselines in the same run: exact hash of the normalised body, and the
sameness URL alone. Throughput counts signature (or hash) computation.

    .venv/bin/python bench/dedupe.py [--threshold 0.3] [--containment 0.7] [--shingle-words 4]
                                     [--min-words 15]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.config import DedupeSettings
from monitor.minhash import signature, tokens
from monitor.sameness import (
    BAND_ROWS,
    BANDS,
    band_keys,
    same_story,
    sameness_url,
)
from monitor.textsig import TextSignature

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ARTICLES = DATA / "articles" / "candidates.jsonl"
BODIES = DATA / "extraction" / "scrapinghub-article-extraction-benchmark" / "ground-truth.json"
VARIANTS = ("headline", "trimmed", "boilerplate", "all", "tracking")
CAUGHT_TARGET, MERGED_TARGET = 0.95, 0.005
# Written for this bench: what mirrors and syndication partners wrap around a story.
BOILER_START = "By our staff and wire services | Updated 14:05 | Share on social media | Print"
BOILER_END = (
    "Sign up for our morning newsletter to get the day's top stories. Copyright: all rights "
    "reserved, republished with permission. Read more: latest news, world, business."
)


@dataclass(frozen=True)
class Story:
    id: str
    title: str
    text: str
    url: str


def load() -> list[Story]:
    stories: list[Story] = []
    for line in ARTICLES.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            continue
        r = json.loads(line)
        url = r.get("url") or f"https://news.example/{r['id']}"
        stories.append(Story(r["id"], r["title"], r["text"], url))
    for key, r in json.loads(BODIES.read_text(encoding="utf-8")).items():
        url = r.get("url") or f"https://pages.example/{key[:12]}"
        stories.append(Story(f"sh-{key[:12]}", "", r["articleBody"], url))
    unique: dict[str, Story] = {}
    for s in stories:
        unique.setdefault(" ".join(s.text.split()), s)  # one story per distinct text
    return list(unique.values())


def mirror(url: str, rnd: random.Random) -> str:
    return f"https://mirror{rnd.randrange(1000)}.example/story/{rnd.randrange(10**9)}"


def republish(s: Story, variant: str, rnd: random.Random) -> Story:
    text = s.text
    if variant in ("trimmed", "all"):
        text = text[: int(len(text) * (1 - rnd.uniform(0.1, 0.3)))]
    if variant in ("boilerplate", "all"):
        text = f"{BOILER_START}\n\n{text}\n\n{BOILER_END}"
    if variant in ("headline", "all"):
        text = f"Breaking: {s.title or 'the story in full'}, reported again\n\n{text}"
    if variant == "tracking":
        u = s.url.replace("://", "://www.", 1) if "://www." not in s.url else s.url
        url = u + ("&" if "?" in u else "?") + "utm_source=rss&utm_medium=feed&fbclid=x1#top"
    else:
        url = mirror(s.url, rnd)
    return Story(s.id + ":" + variant, "", text, url)


def exact_key(text: str) -> str:
    return hashlib.sha256(" ".join(tokens(text)).encode()).hexdigest()


@dataclass
class Method:
    name: str
    same: Callable[[int, int], bool]  # (original index, copy index) -> same story?
    merged: int  # wrongly merged distinct pairs
    per_s: float | None


def timed(fn: Callable[[str], object], texts: list[str]) -> tuple[list[object], float]:
    started = time.perf_counter()
    out = [fn(t) for t in texts]
    return out, len(texts) / max(time.perf_counter() - started, 1e-9)


def sig_matrix(sigs: list[TextSignature | None]) -> tuple[np.ndarray, np.ndarray]:
    ok = np.array([s is not None for s in sigs])
    m = np.array(
        [s.values if s is not None else (0,) * (BANDS * BAND_ROWS) for s in sigs], np.uint64
    )
    return m, ok


def banded(a: TextSignature, b: TextSignature) -> bool:
    """Do the two share an LSH band (so the daemon compares them at all)?"""
    return bool(set(band_keys(a.values)) & set(band_keys(b.values)))


def text_same(
    a: TextSignature | None, b: TextSignature | None, threshold: float, contained: float | None
) -> bool:
    """The daemon's text verdict: a shared band, then ``same_story``."""
    if a is None or b is None:
        return False
    return banded(a, b) and same_story(a, b, threshold, contained)


def merged_pairs(
    sigs: list[TextSignature | None], threshold: float, contained: float | None
) -> tuple[int, list[tuple[float, int, int]]]:
    """Distinct pairs the daemon would call the same story, and the most
    similar distinct pairs (Jaccard, i, j). Band sharing is found with numpy;
    each band-sharing pair is then judged by ``same_story`` itself."""
    m, ok = sig_matrix(sigs)
    merged = 0
    top: list[tuple[float, int, int]] = []
    for i in range(len(m) - 1):
        a = sigs[i]
        if a is None:
            continue
        eq = m[i + 1 :] == m[i]
        shared = eq.reshape(len(eq), BANDS, BAND_ROWS).all(axis=2).any(axis=1) & ok[i + 1 :]
        for j in np.flatnonzero(shared):
            b = sigs[i + 1 + int(j)]
            assert b is not None
            merged += same_story(a, b, threshold, contained)
        sim = eq.mean(axis=1)
        top.extend(
            (float(sim[j]), i, i + 1 + int(j)) for j in np.flatnonzero(ok[i + 1 :] & (sim >= 0.1))
        )
    return merged, sorted(top, reverse=True)[:5]


def main() -> None:
    d = DedupeSettings()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threshold", type=float, default=d.threshold)
    ap.add_argument("--containment", type=float, default=d.containment, help="0: off")
    ap.add_argument("--shingle-words", type=int, default=d.shingle_words)
    ap.add_argument("--min-words", type=int, default=d.min_words)
    ap.add_argument("--seed", type=int, default=9)
    args = ap.parse_args()
    contained: float | None = args.containment or None
    rnd = random.Random(args.seed)
    stories = load()
    copies = {v: [republish(s, v, rnd) for s in stories] for v in VARIANTS}
    n = len(stories)
    pairs = n * (n - 1) // 2

    def sig(text: str) -> TextSignature | None:
        return signature(text, shingle_words=args.shingle_words, min_words=args.min_words)

    originals = [s.text for s in stories]
    raw_sigs, sig_per_s = timed(sig, originals)
    raw_hashes, hash_per_s = timed(exact_key, originals)
    sigs = [s if isinstance(s, TextSignature) else None for s in raw_sigs]
    hashes = [str(h) for h in raw_hashes]
    urls = [sameness_url(s.url) for s in stories]
    copy_sigs = {v: [sig(c.text) for c in cs] for v, cs in copies.items()}
    copy_hashes = {v: [exact_key(c.text) for c in cs] for v, cs in copies.items()}
    copy_urls = {v: [sameness_url(c.url) for c in cs] for v, cs in copies.items()}

    def same_url(v: str, i: int) -> bool:
        return copy_urls[v][i] is not None and copy_urls[v][i] == urls[i]

    url_merged = sum(c * (c - 1) // 2 for c in _counts(u for u in urls if u))
    exact_merged = sum(c * (c - 1) // 2 for c in _counts(hashes))
    jaccard_merged, _ = merged_pairs(sigs, args.threshold, None)
    ours_merged, top = merged_pairs(sigs, args.threshold, contained)

    def caught(same: Callable[[str, int], bool]) -> dict[str, float]:
        return {v: sum(same(v, i) for i in range(n)) / n for v in VARIANTS}

    ours_label = "feed-monitor (URL+text)"
    rows = {
        "exact body hash": (caught(lambda v, i: copy_hashes[v][i] == hashes[i]), exact_merged,
                            hash_per_s),
        "URL only": (caught(same_url), url_merged, None),
        "MinHash Jaccard only": (
            caught(lambda v, i: text_same(sigs[i], copy_sigs[v][i], args.threshold, None)),
            jaccard_merged, sig_per_s),
        ours_label: (
            caught(lambda v, i: same_url(v, i)
                   or text_same(sigs[i], copy_sigs[v][i], args.threshold, contained)),
            ours_merged + url_merged, sig_per_s),
    }  # fmt: skip
    eligible = sum(s is not None for s in sigs)
    print(f"stories: {n} distinct ({eligible} with >= {args.min_words} words, compared by text); "
          f"distinct pairs: {pairs:,}")  # fmt: skip
    print(f"settings: threshold {args.threshold}, containment {contained}, shingle "
          f"{args.shingle_words} words, {BANDS} bands x {BAND_ROWS} rows\n")  # fmt: skip
    head = f"{'method':<24}" + "".join(f"{v:>12}" for v in VARIANTS)
    print(head + f"{'caught all':>11}{'merged':>9}{'merged %':>10}{'texts/s':>9}")
    for name, (c, merged, per_s) in rows.items():
        overall = sum(c.values()) / len(c)
        speed = f"{per_s:>9.0f}" if per_s else f"{'-':>9}"
        print(f"{name:<24}" + "".join(f"{c[v]:>11.1%} " for v in VARIANTS)
              + f"{overall:>10.1%} {merged:>8} {merged / pairs:>9.3%}{speed}")  # fmt: skip
    ours, merged_total = rows[ours_label][0], rows[ours_label][1]
    overall = sum(ours.values()) / len(VARIANTS)
    long_ids = [i for i in range(n) if sigs[i] is not None]
    long_caught = sum(
        same_url(v, i) or text_same(sigs[i], copy_sigs[v][i], args.threshold, contained)
        for v in VARIANTS
        for i in long_ids
    ) / max(1, len(VARIANTS) * len(long_ids))
    print(f"\nfeed-monitor, stories with >= {args.min_words} words only: caught {long_caught:.1%}")
    base = _mean(rows["exact body hash"][0])
    print(f"ratio feed-monitor / exact hash: caught {overall / base:.2f}x, "
          f"speed {sig_per_s / hash_per_s:.2f}x")  # fmt: skip
    print("most similar distinct pairs (read them: near-copies in the data, or false merges?):")
    for sim, i, j in top:
        print(f"  {sim:.2f}  {stories[i].id}  {stories[j].id}")
    verdict = overall >= CAUGHT_TARGET and merged_total / pairs <= MERGED_TARGET
    print(f"targets (>= {CAUGHT_TARGET:.0%} caught, <= {MERGED_TARGET:.1%} merged): "
          f"{'met' if verdict else 'NOT met'}")  # fmt: skip


def _mean(c: dict[str, float]) -> float:
    return max(sum(c.values()) / len(c), 1e-9)


def _counts(items: object) -> list[int]:
    from collections import Counter

    return list(Counter(items).values())  # type: ignore[call-overload]


if __name__ == "__main__":
    main()
