"""How fast is matching as rules grow? (issue: watch rules, "Fast at scale")

Reads real article texts from ../shared/data/articles/candidates.jsonl in
place, builds rule sets of 1, 100 and 1,000 rules by varying the default
pack (country pairs, proximity, thresholds, field weights), and prints
articles per second on one core for feed-monitor's matcher and, measured in
the same run, for a naive matcher that runs every rule's own regexes over
every article.

    .venv/bin/python bench/matcher.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from monitor.matching import Story, match_story
from monitor.rules import RuleSet, compile_rules
from monitor.termindex import lemma_of
from monitor.text import normalise

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "articles" / "candidates.jsonl"
PACK = ROOT / "config" / "rules" / "sino-russian-military.yaml"

# Country names (en, de, fr, es, ru stem, zh) for generating varied rules.
COUNTRIES = {
    "india": ["india", "indien", "inde", "индия", "印度"],
    "iran": ["iran", "irán", "иран*", "伊朗"],
    "pakistan": ["pakistan", "pakistán", "пакистан*", "巴基斯坦"],
    "turkey": ["turkey", "türkei", "turquie", "турци*", "土耳其"],
    "japan": ["japan", "japon", "japón", "япони*", "日本"],
    "korea": ["korea", "corée", "корея", "корei*", "韩国", "朝鲜"],
    "vietnam": ["vietnam", "viêt nam", "вьетнам*", "越南"],
    "belarus": ["belarus", "biélorussie", "белорусси*", "беларус*", "白俄罗斯"],
    "ukraine": ["ukraine", "ucrania", "украин*", "乌克兰"],
    "france": ["france", "frankreich", "francia", "франци*", "法国"],
    "germany": ["germany", "deutschland", "allemagne", "германи*", "德国"],
    "britain": ["britain", "united kingdom", "großbritannien", "британи*", "英国"],
    "usa": ["united states", "usa", "vereinigte staaten", "états-unis", "сша", "美国"],
    "egypt": ["egypt", "ägypten", "égypte", "египет*", "埃及"],
    "brazil": ["brazil", "brasilien", "brésil", "бразили*", "巴西"],
    "indonesia": ["indonesia", "indonesien", "indonésie", "индонези*", "印度尼西亚"],
    "serbia": ["serbia", "serbien", "serbie", "серби*", "塞尔维亚"],
    "cuba": ["cuba", "kuba", "куба", "古巴"],
    "syria": ["syria", "syrien", "syrie", "сири*", "叙利亚"],
    "laos": ["laos", "лаос*", "老挝"],
    "mongolia": ["mongolia", "mongolei", "mongolie", "монголи*", "蒙古"],
    "kazakhstan": ["kazakhstan", "kasachstan", "казахстан*", "哈萨克斯坦"],
    "israel": ["israel", "israël", "израил*", "以色列"],
    "australia": ["australia", "australien", "australie", "австрали*", "澳大利亚"],
    "norway": ["norway", "norwegen", "norvège", "норвеги*", "挪威"],
}


def load_articles() -> list[Story]:
    if not DATA.exists():
        sys.exit(f"missing {DATA}: run beside a checkout of ../shared")
    stories = []
    with DATA.open(encoding="utf-8") as fh:
        for line in fh:
            item = json.loads(line)
            stories.append(Story(item.get("title") or "", "", item.get("text") or ""))
    return stories


def generate_pack(n: int, seed: int = 7) -> str:
    """The default pack plus n-1 varied copies of its rule."""
    pack: dict[str, Any] = yaml.safe_load(PACK.read_text(encoding="utf-8"))
    base = pack["rules"][0]
    rng = random.Random(seed)
    names = list(COUNTRIES)
    concepts = dict(pack["concepts"])
    for c, terms in COUNTRIES.items():
        concepts[f"country_{c}"] = {"terms": {"any": terms}}
    rules = [base]
    text = yaml.safe_dump(base["match"])
    for i in range(1, n):
        a, b = rng.sample(["china", "russia", *(f"country_{c}" for c in names)], 2)
        variant = text.replace("china", "__A__").replace("russia", "__B__")
        variant = variant.replace("__A__", a).replace("__B__", b)
        variant = variant.replace("within: paragraph", f"within: {rng.choice(['paragraph', 40])}")
        rules.append(
            {
                "id": f"variant-{i}",
                "title": f"{a} and {b}, military cooperation (variant {i})",
                "threshold": float(base.get("threshold", 1)) + rng.choice([0, 1, 2]),
                "fields": {"title": rng.choice([2, 3, 4]), "summary": 1.5, "body": 1},
                "match": yaml.safe_load(variant),
            }
        )
    return yaml.safe_dump({"concepts": concepts, "rules": rules[:n]}, allow_unicode=True)


def rate(fn: Any, stories: list[Story], seconds: float) -> float:
    """Articles per second, over whole passes until ``seconds`` have elapsed."""
    done = 0
    start = time.perf_counter()
    while True:
        for s in stories:
            fn(s)
            done += 1
            if done % 50 == 0 and time.perf_counter() - start > seconds:
                return done / (time.perf_counter() - start)


class NaiveMatcher:
    """Every rule's concepts as separate regexes, run on every article."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.rules = []
        for rule in ruleset.rules:
            pats = []
            for c in rule.concepts:
                alts = []
                for t in ruleset.concepts[c].terms:
                    if t.form == "lemma":
                        continue
                    k = re.escape(t.key) if t.form != "regex" else t.key
                    alts.append(k)
                pats.append(re.compile("|".join(alts) or "(?!)"))
            self.rules.append(pats)

    def __call__(self, story: Story) -> int:
        text = normalise(story.title + "\n" + story.body)
        return sum(all(p.search(text) for p in pats) for pats in self.rules)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = ap.parse_args()
    stories = load_articles()
    lemma_of.cache_clear()
    print(f"{len(stories)} real articles, single core, {args.seconds:g} s per cell\n")
    print(
        f"{'rules':>6} {'matched':>8} {'feed-monitor art/s':>19} {'naive art/s':>12} "
        f"{'ratio':>6} {'vs 1 rule':>10}"
    )
    first = None
    for n in (1, 100, 1000):
        ruleset = compile_rules([(f"<generated {n}>", generate_pack(n))])
        matched = sum(
            any(r.matched for r in match_story(s, ruleset, all_rules=False)) for s in stories
        )
        ours = rate(lambda s, rs=ruleset: match_story(s, rs, all_rules=False), stories,
                    args.seconds)  # fmt: skip
        naive = rate(NaiveMatcher(ruleset), stories[:100], min(args.seconds, 2.0))
        first = first or ours
        print(f"{n:>6} {matched:>8} {ours:>19.0f} {naive:>12.0f} {ours / naive:>5.1f}x "
              f"{first / ours:>9.2f}x")  # fmt: skip
    print("\ntargets: >= 2000 art/s at 1000 rules; 1000-rule time <= 3x the 1-rule time")


if __name__ == "__main__":
    main()
