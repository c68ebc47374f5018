"""How well does the default rule find Sino-Russian military cooperation?

Reads ../shared/data/articles/candidates.jsonl in place (546 real stories,
labelled relevant / near_miss / other; the labels are guesses), runs them
through the ``feed-monitor match --jsonl`` command exactly as an outside
evaluation tool would, and prints per language and overall: stories,
relevant ones, flagged ones, TP, FP, FN, precision and recall (positive
class: ``relevant``). A naive keyword baseline (both countries named, in
English, Chinese or Russian) is measured in the same run.

Figures are printed twice, clearly separated: with the labels as given, and
with the corrections listed in bench/label-notes.md (a table row
``| `id` | old | new | reason |`` per correction).

    .venv/bin/python bench/relevance.py [--data FILE] [--config FILE] [--rule ID]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "articles" / "candidates.jsonl"
CONFIG = ROOT / "config" / "monitor.yaml"
NOTES = ROOT / "bench" / "label-notes.md"
RULE = "sino-russian-military"
BAR = 0.95
LABELS = ("relevant", "near_miss", "other")
# The naive baseline: both countries named, by a plain keyword each.
BASELINE_CN = ("china", "中国", "中", "китай")
BASELINE_RU = ("russia", "俄", "росси")
_CORRECTION = re.compile(
    r"^\|\s*`?([\w.-]+)`?\s*\|\s*(relevant|near_miss|other)\s*\|\s*(relevant|near_miss|other)\s*\|"
)


@dataclass(frozen=True)
class Story:
    """One labelled story of the data set."""

    id: str
    lang: str
    title: str
    text: str
    label: str


@dataclass
class Tally:
    """Confusion counts for one group of stories."""

    n: int = 0
    relevant: int = 0
    flagged: int = 0
    tp: int = 0

    @property
    def fp(self) -> int:
        return self.flagged - self.tp

    @property
    def fn(self) -> int:
        return self.relevant - self.tp

    @property
    def precision(self) -> float | None:
        return self.tp / self.flagged if self.flagged else None

    @property
    def recall(self) -> float | None:
        return self.tp / self.relevant if self.relevant else None

    def add(self, relevant: bool, flagged: bool) -> None:
        self.n += 1
        self.relevant += relevant
        self.flagged += flagged
        self.tp += relevant and flagged


def load_stories(path: Path) -> list[Story]:
    """The labelled stories, or exit with a clear message if the file is missing."""
    if not path.is_file():
        sys.exit(
            f"error: {path} not found. The bench reads the shared data set in place:"
            " run it from a checkout that has ../shared/data/articles beside it, or pass --data."
        )
    stories = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            item = json.loads(line)
            label = item.get("label_guess")
            if label not in LABELS:
                sys.exit(f"error: {path}:{n}: label_guess {label!r} is not one of {LABELS}")
            stories.append(
                Story(
                    str(item["id"]),
                    str(item.get("lang") or "?"),
                    str(item.get("title") or ""),
                    str(item.get("text") or ""),
                    label,
                )
            )
    return stories


def load_corrections(path: Path) -> dict[str, str]:
    """Label corrections (id -> new label) from the table in label-notes.md."""
    if not path.is_file():
        return {}
    fixes = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _CORRECTION.match(line)
        if m:
            fixes[m.group(1)] = m.group(3)
    return fixes


def cli_command() -> list[str]:
    """The feed-monitor command of this interpreter's environment."""
    script = Path(sys.executable).parent / "feed-monitor"
    if script.is_file():
        return [str(script)]
    found = shutil.which("feed-monitor")
    return [found] if found else [sys.executable, "-m", "monitor"]


def run_matcher(data: Path, config: Path, rule: str) -> set[str]:
    """Ids of the stories the rule flags, via ``feed-monitor match --jsonl``."""
    cmd = [*cli_command(), "match", "--jsonl", str(data), "--config", str(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", check=False)
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr.strip()}")
    flagged = set()
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        result = json.loads(line)
        if any(r.get("id") == rule for r in result.get("rules", ())):
            flagged.add(str(result["id"]))
    return flagged


def baseline(story: Story) -> bool:
    """The naive keyword test: a China word and a Russia word anywhere."""
    text = f"{story.title}\n{story.text}".casefold()
    return any(k in text for k in BASELINE_CN) and any(k in text for k in BASELINE_RU)


def tally(
    stories: Iterable[Story], labels: Mapping[str, str], flagged: set[str]
) -> dict[str, Tally]:
    """Counts per language, plus ``*`` for all stories together."""
    out: dict[str, Tally] = {"*": Tally()}
    for s in stories:
        rel = labels[s.id] == "relevant"
        hit = s.id in flagged
        out.setdefault(s.lang, Tally()).add(rel, hit)
        out["*"].add(rel, hit)
    return out


def fmt(x: float | None) -> str:
    return "   -" if x is None else f"{x:.3f}"


def print_table(title: str, ours: dict[str, Tally], base: dict[str, Tally]) -> None:
    """The per-language table and the overall row, ours beside the baseline."""
    print(f"\n{title}")
    print(
        f"{'lang':<5} {'n':>4} {'rel':>4} {'flag':>4} {'TP':>4} {'FP':>4} {'FN':>4}"
        f" {'prec':>6} {'recall':>6}   {'base P':>6} {'base R':>6}"
    )
    langs = sorted((k for k in ours if k != "*"), key=lambda k: (-ours[k].n, k))
    for lang in [*langs, "*"]:
        t, b = ours[lang], base[lang]
        name = "ALL" if lang == "*" else lang
        print(
            f"{name:<5} {t.n:>4} {t.relevant:>4} {t.flagged:>4} {t.tp:>4} {t.fp:>4} {t.fn:>4}"
            f" {fmt(t.precision):>6} {fmt(t.recall):>6}   {fmt(b.precision):>6} {fmt(b.recall):>6}"
        )


def print_summary(ours: Tally, base: Tally) -> None:
    """Overall figures, the baseline, their ratio and the quality bar."""

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}x" if a is not None and b else "-"

    print(
        f"overall: precision {fmt(ours.precision)}  recall {fmt(ours.recall)}"
        f"   (TP {ours.tp}, FP {ours.fp}, FN {ours.fn})"
    )
    print(
        f"baseline (China word and Russia word, en/zh/ru): precision {fmt(base.precision)}"
        f"  recall {fmt(base.recall)}   (flags {base.flagged})"
    )
    print(
        f"ratio rule/baseline: precision {ratio(ours.precision, base.precision)}"
        f"  recall {ratio(ours.recall, base.recall)}"
    )
    met = all(x is not None and x >= BAR for x in (ours.precision, ours.recall))
    print(f"bar (precision and recall >= {BAR}): {'met' if met else 'NOT met'}")


def print_errors(
    stories: list[Story], labels: Mapping[str, str], flagged: set[str], fixes: Mapping[str, str]
) -> None:
    """False positives and false negatives by id and (truncated) title."""
    fps = [s for s in stories if s.id in flagged and labels[s.id] != "relevant"]
    fns = [s for s in stories if s.id not in flagged and labels[s.id] == "relevant"]
    for name, group in (("false positives", fps), ("false negatives", fns)):
        print(f"\n{name} ({len(group)}):")
        for s in group:
            note = f"  [label corrected to {fixes[s.id]}]" if s.id in fixes else ""
            title = " ".join(s.title.split())
            title = title if len(title) <= 70 else title[:69] + "…"
            print(f"  {s.id:<20} {s.lang:<3} {labels[s.id]:<9} {title}{note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA, help="labelled stories (JSONL)")
    ap.add_argument("--config", type=Path, default=CONFIG, help="feed-monitor config")
    ap.add_argument("--rule", default=RULE, help="rule id to evaluate")
    ap.add_argument("--notes", type=Path, default=NOTES, help="label corrections (Markdown)")
    args = ap.parse_args()

    stories = load_stories(args.data)
    fixes = load_corrections(args.notes)
    unknown = sorted(set(fixes) - {s.id for s in stories})
    if unknown:
        sys.exit(f"error: {args.notes} corrects ids not in the data: {', '.join(unknown)}")
    flagged = run_matcher(args.data, args.config, args.rule)
    base_flagged = {s.id for s in stories if baseline(s)}
    raw = {s.id: s.label for s in stories}
    fixed = {**raw, **fixes}

    print(f"{len(stories)} stories from {args.data}; rule {args.rule!r} via feed-monitor match")
    for title, labels in (
        ("== RAW LABELS (label_guess as given) ==", raw),
        (f"== CORRECTED LABELS ({len(fixes)} corrections from {args.notes.name}) ==", fixed),
    ):
        ours = tally(stories, labels, flagged)
        base = tally(stories, labels, base_flagged)
        print_table(title, ours, base)
        print()
        print_summary(ours["*"], base["*"])
        print_errors(stories, labels, flagged, fixes)


if __name__ == "__main__":
    main()
