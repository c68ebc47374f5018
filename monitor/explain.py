"""Human-readable and JSON explanations of match results (pure)."""

from __future__ import annotations

from typing import Any

from monitor.matching import RuleResult, Story, snippet


def explain(story: Story, results: list[RuleResult], label: str) -> str:
    lines = [f"== {label}"]
    for r in results:
        verdict = "MATCH" if r.matched else "no match"
        lines.append(
            f"  {r.rule.id}: {verdict}  score {r.score:g} / threshold {r.rule.threshold:g}"
            f"  ({r.rule.source})"
        )
        for reason in r.failed:
            lines.append(f"    why not: {reason}")
        for h in sorted(r.hits, key=lambda h: -h.contribution)[:15]:
            lines.append(
                f"    +{h.contribution:<6g} {h.concept}: {h.term!r} matched {h.text!r}"
                f" in {h.field} @{h.start}  {snippet(story, h)}"
            )
    return "\n".join(lines)


def jsonl_result(item_id: Any, results: list[RuleResult]) -> dict[str, Any]:
    """The ``match --jsonl`` output contract: keep it stable."""
    matched = [r for r in results if r.matched]
    return {
        "id": item_id,
        "matched": bool(matched),
        "rules": [
            {
                "id": r.rule.id,
                "score": r.score,
                "terms": list(dict.fromkeys(h.term for h in r.hits)),
            }
            for r in matched
        ],
    }
