"""How good and how fast is article extraction? (issue: "Extraction better than bare trafilatura")

Reads two corpora in place from ../shared/data/extraction/ (never copied):

- scrapinghub-article-extraction-benchmark: 181 news pages with the true
  ``articleBody``; scored by body F1, precision and recall over word tokens
  (bag of lower-cased ``\\w+`` tokens), averaged over pages;
- trafilatura-eval: 990 multilingual pages with snippets that must appear
  in the main text and snippets that must not (boilerplate); scored by the
  share of must-appear snippets found, of must-not-appear snippets avoided,
  and the snippet F1 (whitespace-normalised substring matching, as upstream).

Extractors: feed-monitor's ``extract_page`` ("ours") and bare trafilatura
``extract`` in its four modes (default, favor_precision, favor_recall,
fast), each with include_comments=False, include_tables=True. Each extractor
runs in its own fresh worker process, so its peak RSS is its own (os.wait4),
and pages are handed out in chunks round-robin, one worker busy at a time:
throughput is single-process and every extractor sees the same machine load.
Pages per second count extraction only (not reading or gunzipping).

    .venv/bin/python bench/extraction.py [--limit N] [--chunk 10]
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "extraction"
SH = DATA / "scrapinghub-article-extraction-benchmark"
TE = DATA / "trafilatura-eval"
MAX_HTML_BYTES = 3_000_000  # the config default (extraction.max_html_bytes)

OURS = "ours"
MODES: dict[str, dict[str, Any]] = {
    "default": {},
    "precision": {"favor_precision": True},
    "recall": {"favor_recall": True},
    "fast": {"fast": True},
}
EXTRACTORS = [OURS, *MODES]
WARMUP = (
    b"<html><head><title>Warm-up</title></head><body><article><h1>Warm-up</h1>"
    + b"<p>This paragraph only loads the libraries and models before timing starts. " * 8
    + b"</p></article></body></html>"
)

TOKEN = re.compile(r"\w+")
SPACE = re.compile(r"\s+")


# --- worker side -----------------------------------------------------------------


def _extractor(name: str) -> Callable[[bytes, str | None], str]:
    if name == OURS:
        from monitor.extract import extract_page

        def ours(html: bytes, url: str | None) -> str:
            return extract_page(html, url, MAX_HTML_BYTES).text

        return ours
    import trafilatura

    opts = MODES[name]

    def bare(html: bytes, url: str | None) -> str:
        out = trafilatura.extract(
            html, url=url, include_comments=False, include_tables=True, **opts
        )
        return str(out or "")

    return bare


def worker(name: str) -> None:
    """Serve extraction requests on stdin/stdout, one JSON object a line."""
    logging.disable(logging.CRITICAL)
    sys.path.insert(0, str(ROOT))
    fn = _extractor(name)
    fn(WARMUP, None)
    for line in sys.stdin:
        req = json.loads(line)
        texts: list[str] = []
        wall = cpu = 0.0
        for path, url in zip(req["paths"], req["urls"], strict=True):
            html = gzip.decompress(Path(path).read_bytes())
            w0, c0 = time.perf_counter(), time.process_time()
            try:
                text = fn(html, url)
            except Exception as exc:  # a crash is a miss, as upstream counts it
                text = ""
                print(f"{name}: {Path(path).name}: {exc!r}", file=sys.stderr)
            wall += time.perf_counter() - w0
            cpu += time.process_time() - c0
            texts.append(text)
        sys.stdout.write(json.dumps({"texts": texts, "wall": wall, "cpu": cpu}) + "\n")
        sys.stdout.flush()


# --- parent side -------------------------------------------------------------------


@dataclass
class Page:
    corpus: str  # "sh" or "te"
    path: Path
    url: str | None
    truth: str = ""
    must: list[str] = field(default_factory=list)
    must_not: list[str] = field(default_factory=list)


def load_pages(limit: int | None) -> list[Page]:
    truth = json.loads((SH / "ground-truth.json").read_text(encoding="utf-8"))
    sh = [
        Page("sh", SH / "html" / f"{key}.html.gz", v.get("url"), truth=v["articleBody"])
        for key, v in sorted(truth.items())
    ]
    evaldata = json.loads((TE / "evaldata.json").read_text(encoding="utf-8"))
    te = [
        Page(
            "te",
            TE / "html" / f"{item['file']}.gz",
            url if url.startswith("http") else None,
            must=item["with"],
            must_not=item["without"],
        )
        for url, item in evaldata.items()
    ]
    if limit is not None:
        sh, te = sh[:limit], te[:limit]
    return sh + te


def token_prf(pred: str, true: str) -> tuple[float, float, float]:
    """Precision, recall, F1 of the bag of word tokens."""
    p = Counter(TOKEN.findall(pred.lower()))
    t = Counter(TOKEN.findall(true.lower()))
    tp = sum((p & t).values())
    prec = tp / sum(p.values()) if p else 0.0
    rec = tp / sum(t.values()) if t else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return prec, rec, f1


def norm(text: str) -> str:
    return SPACE.sub(" ", text).strip()


@dataclass
class Score:
    sh_p: list[float] = field(default_factory=list)
    sh_r: list[float] = field(default_factory=list)
    sh_f: list[float] = field(default_factory=list)
    found: int = 0
    must: int = 0
    avoided: int = 0
    must_not: int = 0
    pages: dict[str, int] = field(default_factory=lambda: {"sh": 0, "te": 0})
    wall: dict[str, float] = field(default_factory=lambda: {"sh": 0.0, "te": 0.0})
    cpu: dict[str, float] = field(default_factory=lambda: {"sh": 0.0, "te": 0.0})
    rss_mib: float = 0.0

    def add(self, page: Page, text: str) -> None:
        if page.corpus == "sh":
            p, r, f = token_prf(text, page.truth)
            self.sh_p.append(p)
            self.sh_r.append(r)
            self.sh_f.append(f)
        else:
            t = norm(text)
            self.found += sum(1 for s in page.must if norm(s) in t)
            self.must += len(page.must)
            self.avoided += sum(1 for s in page.must_not if norm(s) not in t)
            self.must_not += len(page.must_not)

    def metrics(self) -> dict[str, float]:
        def mean(xs: list[float]) -> float:
            return sum(xs) / len(xs) if xs else 0.0

        tp, fn, fp = self.found, self.must - self.found, self.must_not - self.avoided
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        pages = sum(self.pages.values())
        wall, cpu = sum(self.wall.values()), sum(self.cpu.values())
        return {
            "sh_f1": mean(self.sh_f),
            "sh_p": mean(self.sh_p),
            "sh_r": mean(self.sh_r),
            "te_with": self.found / self.must if self.must else 0.0,
            "te_without": self.avoided / self.must_not if self.must_not else 0.0,
            "te_f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
            "pps": pages / wall if wall else 0.0,
            "pps_cpu": pages / cpu if cpu else 0.0,
            "sh_pps": self.pages["sh"] / self.wall["sh"] if self.wall["sh"] else 0.0,
            "te_pps": self.pages["te"] / self.wall["te"] if self.wall["te"] else 0.0,
            "rss": self.rss_mib,
        }


class Worker:
    def __init__(self, name: str) -> None:
        self.name = name
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def run(self, pages: list[Page]) -> tuple[list[str], float, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        req = {"paths": [str(p.path) for p in pages], "urls": [p.url for p in pages]}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} died")
        out = json.loads(line)
        return list(out["texts"]), float(out["wall"]), float(out["cpu"])

    def finish(self) -> float:
        """Peak RSS of this worker alone, in MiB (from its own rusage)."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        _, _, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = 0
        return usage.ru_maxrss / 1024  # KiB on Linux


def run(pages: list[Page], chunk: int) -> dict[str, Score]:
    workers = {name: Worker(name) for name in EXTRACTORS}
    scores = {name: Score() for name in EXTRACTORS}
    chunks: list[list[Page]] = []
    for corpus in ("sh", "te"):
        some = [p for p in pages if p.corpus == corpus]
        chunks.extend(some[i : i + chunk] for i in range(0, len(some), chunk))
    try:
        for n, part in enumerate(chunks):
            # rotate the order so no extractor always runs first after a pause
            order = EXTRACTORS[n % len(EXTRACTORS) :] + EXTRACTORS[: n % len(EXTRACTORS)]
            for name in order:
                texts, wall, cpu = workers[name].run(part)
                sc = scores[name]
                corpus = part[0].corpus
                for page, text in zip(part, texts, strict=True):
                    sc.add(page, text)
                sc.pages[corpus] += len(part)
                sc.wall[corpus] += wall
                sc.cpu[corpus] += cpu
            if (n + 1) % 10 == 0 or n + 1 == len(chunks):
                done = sum(len(c) for c in chunks[: n + 1])
                print(f"  {done}/{len(pages)} pages", file=sys.stderr, flush=True)
    finally:
        for name, w in workers.items():
            scores[name].rss_mib = w.finish()
    return scores


COLUMNS = [
    ("sh_f1", "SH F1", "{:.4f}"),
    ("sh_p", "SH P", "{:.4f}"),
    ("sh_r", "SH R", "{:.4f}"),
    ("te_with", "TE with", "{:.4f}"),
    ("te_without", "TE w/o", "{:.4f}"),
    ("te_f1", "TE F1", "{:.4f}"),
    ("sh_pps", "SH p/s", "{:.1f}"),
    ("te_pps", "TE p/s", "{:.1f}"),
    ("pps", "p/s", "{:.1f}"),
    ("pps_cpu", "p/s cpu", "{:.1f}"),
    ("rss", "RSS MiB", "{:.0f}"),
]
LOWER_IS_BETTER = {"rss"}


def report(scores: dict[str, Score]) -> None:
    m = {name: s.metrics() for name, s in scores.items()}
    head = f"{'extractor':<22}" + "".join(f"{title:>9}" for _, title, _ in COLUMNS)
    print(head)
    print("-" * len(head))
    for name in EXTRACTORS:
        label = name if name == OURS else f"trafilatura {name}"
        row = "".join(f"{fmt.format(m[name][key]):>9}" for key, _, fmt in COLUMNS)
        print(f"{label:<22}{row}")
    best: dict[str, float] = {}
    for key, _, _ in COLUMNS:
        values = [m[name][key] for name in MODES]
        best[key] = min(values) if key in LOWER_IS_BETTER else max(values)
    ratio = "".join(
        f"{m[OURS][key] / best[key] if best[key] else 0.0:>9.3f}" for key, _, _ in COLUMNS
    )
    print(f"{'ours / best bare':<22}{ratio}")
    fast = "".join(
        f"{m[OURS][key] / m['fast'][key] if m['fast'][key] else 0.0:>9.3f}" for key, _, _ in COLUMNS
    )
    print(f"{'ours / fast':<22}{fast}")
    print()
    checks = [
        ("SH body F1 >= 0.97", m[OURS]["sh_f1"] >= 0.97),
        ("SH body F1 >= best bare mode", m[OURS]["sh_f1"] >= best["sh_f1"]),
        ("TE snippet F1 >= best bare mode", m[OURS]["te_f1"] >= best["te_f1"]),
        ("pages/s >= 80% of trafilatura fast", m[OURS]["pps"] >= 0.8 * m["fast"]["pps"]),
    ]
    for what, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="first N pages of each corpus")
    parser.add_argument("--chunk", type=int, default=10, help="pages per round-robin turn")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    pages = load_pages(args.limit)
    n_sh = sum(1 for p in pages if p.corpus == "sh")
    print(f"{n_sh} scrapinghub pages (SH), {len(pages) - n_sh} trafilatura-eval pages (TE)")
    t0 = time.perf_counter()
    scores = run(pages, args.chunk)
    print(f"(ran {time.perf_counter() - t0:.0f} s)\n")
    report(scores)


if __name__ == "__main__":
    main()
