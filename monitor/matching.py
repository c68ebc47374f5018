"""Match a story against a RuleSet, score it, and explain the result.

Pure: a ``Story`` (title, summary, body) and a ``RuleSet`` in, one
``RuleResult`` per rule out. Evaluation order:

1. Each field is normalised and scanned once for every term of every
   concept (``TermIndex``).
2. Only rules whose positive concepts have hits are candidates (unless all
   rules are asked for, to explain why they failed).
3. A rule's tree is evaluated on those hits: a concept holds when any of its
   terms occurs; ``near`` needs its concepts in one sentence, one paragraph
   or N words of one field.
4. Its score sums each hit of its positive concepts: term weight x field
   weight, the k-th repeat of a term in a field counting ``0.5**k``.
5. It matches when the tree holds and the score reaches the threshold.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from monitor.rules import AtLeast, CompiledRule, ConceptRef, Group, Near, RuleSet
from monitor.rules import Node as RuleNode
from monitor.termindex import RawHit
from monitor.text import normalise

FIELDS = ("title", "summary", "body")
REPEAT_DECAY = 0.5
_SENTENCE_END = re.compile(r"[.!?。！？;；]+[\s\"'»”)]*|\n")
_PARAGRAPH_END = re.compile(r"\n\s*\n")
_WORD = re.compile(r"\w+")
SNIPPET_CHARS = 60


@dataclass(frozen=True)
class Story:
    title: str
    summary: str
    body: str

    def field(self, name: str) -> str:
        return {"title": self.title, "summary": self.summary, "body": self.body}[name]


@dataclass(frozen=True, slots=True)
class Hit:
    concept: str
    term: str
    field: str
    start: int  # offsets into the story's own field text
    end: int
    text: str  # the matched text as it stands in the story
    weight: float  # the term's own weight
    contribution: float = 0.0


@dataclass(frozen=True)
class RuleResult:
    rule: CompiledRule
    matched: bool
    score: float
    failed: tuple[str, ...]  # which parts of the tree did not hold
    _evaluation: _Evaluation = field(repr=False, compare=False)

    @cached_property
    def hits(self) -> tuple[Hit, ...]:
        """Each hit of the rule's scoring concepts, with its contribution.

        Built on first use: only alerts and explanations read them.
        """
        ev = self._evaluation
        return tuple(
            score_hits((h for c in self.rule.concepts for h in ev.hits(c)), self.rule.field_weights)
        )


def snippet(story: Story, hit: Hit) -> str:
    """A short excerpt of the hit's field around the hit."""
    text = story.field(hit.field)
    a = max(0, hit.start - SNIPPET_CHARS)
    b = min(len(text), hit.end + SNIPPET_CHARS)
    s = " ".join(text[a:b].split())
    return ("…" if a > 0 else "") + s + ("…" if b < len(text) else "")


class _Positions:
    """Sentence, paragraph and word numbers of one field, for proximity."""

    def __init__(self, text: str) -> None:
        self.text = text

    @cached_property
    def _sentences(self) -> list[int]:
        return [m.end() for m in _SENTENCE_END.finditer(self.text)]

    @cached_property
    def _paragraphs(self) -> list[int]:
        return [m.end() for m in _PARAGRAPH_END.finditer(self.text)]

    @cached_property
    def _words(self) -> list[int]:
        return [m.start() for m in _WORD.finditer(self.text)]

    def sentence(self, offset: int) -> int:
        return bisect.bisect_right(self._sentences, offset)

    def paragraph(self, offset: int) -> int:
        return bisect.bisect_right(self._paragraphs, offset)

    def word(self, offset: int) -> int:
        return bisect.bisect_right(self._words, offset)


class _Evaluation:
    def __init__(self, story: Story, ruleset: RuleSet, folded: bool) -> None:
        self.story = story
        self.ruleset = ruleset
        self.positions = {f: _Positions(story.field(f)) for f in FIELDS}
        index = ruleset.index
        self.hits_by_slot: dict[int, list[tuple[str, RawHit]]] = defaultdict(list)
        for f in FIELDS:
            text = story.field(f)
            if not text:
                continue
            for slot, raw in index.scan(normalise(text), folded=folded).items():
                self.hits_by_slot[slot].extend((f, h) for h in raw)
        self._hits: dict[str, list[Hit]] = {}
        self._near_cache: dict[Near, bool] = {}
        self._score_cache: dict[tuple[int, tuple[float, ...]], float] = {}

    def rule_score(self, rule: CompiledRule) -> float:
        """The rule's score: its concepts' hits, only those present (the usual case
        for most concepts of most rules) costing anything."""
        slots = self.ruleset.index.slot_by_name
        present = self.hits_by_slot
        weights = rule.weights
        total = 0.0
        for c in rule.concepts:
            slot = slots[c]
            if slot in present:
                total += self.slot_score(slot, weights)
        return round(total, 4)

    def slot_score(self, slot: int, weights: tuple[float, ...]) -> float:
        """Sum of a concept's hits, weighted by field, repeats decaying (cached)."""
        key = (slot, weights)
        if key not in self._score_cache:
            terms = self.ruleset.index.slots[slot].terms
            # Same order and repeat rule as score_hits, so the score is the sum
            # of the contributions an alert shows.
            seen: dict[tuple[str, str], int] = defaultdict(int)
            total = 0.0
            for f, (ti, _s, _e) in sorted(
                self.hits_by_slot.get(slot, ()), key=lambda fh: (FIELDS.index(fh[0]), fh[1][1])
            ):
                k = seen[(terms[ti].text, f)]
                seen[(terms[ti].text, f)] += 1
                total += round(terms[ti].weight * weights[FIELDS.index(f)] * REPEAT_DECAY**k, 4)
            self._score_cache[key] = total
        return self._score_cache[key]

    def present(self, concept: str) -> bool:
        return bool(self.hits_by_slot.get(self.ruleset.index.slot_by_name[concept]))

    def hits(self, concept: str) -> list[Hit]:
        if concept not in self._hits:
            slot = self.ruleset.index.slot_by_name[concept]
            terms = self.ruleset.index.slots[slot].terms
            self._hits[concept] = [
                Hit(concept, terms[ti].text, f, s, e, self.story.field(f)[s:e], terms[ti].weight)
                for f, (ti, s, e) in self.hits_by_slot.get(slot, ())
            ]
        return self._hits[concept]

    def holds(self, node: RuleNode, failed: list[str] | None) -> bool:
        """Does the tree hold? Reasons for failure go to ``failed`` if given."""
        match node:
            case ConceptRef(concept=c):
                ok = self.present(c)
                if not ok and failed is not None:
                    failed.append(f"no term of concept {c!r} found")
                return ok
            case Near():
                if node not in self._near_cache:
                    self._near_cache[node] = self._near(node)
                ok = self._near_cache[node]
                if not ok and failed is not None:
                    failed.append(f"{', '.join(node.concepts)} not within {_within(node)}")
                return ok
            case AtLeast(n=n, children=kids):
                inner: list[str] | None = [] if failed is not None else None
                count = sum(self.holds(k, inner) for k in kids)
                if count < n and failed is not None:
                    failed.append(f"at_least {n}: only {count} held ({'; '.join(inner or [])})")
                return count >= n
            case Group(op="all", children=kids):
                if failed is None:
                    return all(self.holds(k, None) for k in kids)
                return all([self.holds(k, failed) for k in kids])
            case Group(op="any", children=kids):
                if failed is None:
                    return any(self.holds(k, None) for k in kids)
                inner = []
                ok = any([self.holds(k, inner) for k in kids])
                if not ok:
                    failed.append(f"none of 'any' held ({'; '.join(inner)})")
                return ok
            case Group(op="none", children=kids):
                present = [k for k in kids if self.holds(k, None)]
                if present and failed is not None:
                    failed.append(f"excluded by 'none': {_describe(present[0])}")
                return not present
        raise AssertionError(f"unknown node {node!r}")

    def _near(self, node: Near) -> bool:
        if not all(self.present(c) for c in node.concepts):
            return False
        for f in FIELDS:
            per_concept = [self._starts(c, f) for c in node.concepts]
            if not all(per_concept):
                continue
            pos = self.positions[f]
            if isinstance(node.within, int):
                if _within_words(per_concept, pos, node.within):
                    return True
                continue
            unit = pos.sentence if node.within == "sentence" else pos.paragraph
            if set.intersection(*({unit(s) for s in starts} for starts in per_concept)):
                return True
        return False

    def _starts(self, concept: str, field: str) -> list[int]:
        """Start offsets of a concept's hits in one field."""
        slot = self.ruleset.index.slot_by_name[concept]
        return [h[1] for f, h in self.hits_by_slot.get(slot, ()) if f == field]


def _within_words(per_concept: list[list[int]], pos: _Positions, n: int) -> bool:
    """Is there a span of at most ``n`` words holding a hit of every concept?"""
    events = sorted((pos.word(s), ci) for ci, starts in enumerate(per_concept) for s in starts)
    counts = [0] * len(per_concept)
    covered = 0
    lo = 0
    for at, ci in events:
        if counts[ci] == 0:
            covered += 1
        counts[ci] += 1
        while events[lo][0] < at - n:
            cj = events[lo][1]
            counts[cj] -= 1
            if counts[cj] == 0:
                covered -= 1
            lo += 1
        if covered == len(per_concept):
            return True
    return False


def _within(node: Near) -> str:
    return f"{node.within} words" if isinstance(node.within, int) else f"one {node.within}"


def _describe(node: RuleNode) -> str:
    match node:
        case ConceptRef(concept=c):
            return c
        case Near(concepts=cs):
            return "near(" + ", ".join(cs) + ")"
        case Group(op=op, children=kids):
            return op + "(" + ", ".join(_describe(k) for k in kids) + ")"
        case AtLeast(n=n, children=kids):
            return f"at_least {n} of (" + ", ".join(_describe(k) for k in kids) + ")"
    return "?"


def score_hits(hits: Iterable[Hit], field_weights: Mapping[str, float]) -> list[Hit]:
    """Give each hit its contribution: weight x field weight, repeats decaying."""
    seen: dict[tuple[str, str, str], int] = defaultdict(int)
    out = []
    for h in sorted(hits, key=lambda h: (FIELDS.index(h.field), h.start)):
        key = (h.concept, h.term, h.field)
        k = seen[key]
        seen[key] += 1
        c = h.weight * field_weights.get(h.field, 1.0) * REPEAT_DECAY**k
        out.append(Hit(h.concept, h.term, h.field, h.start, h.end, h.text, h.weight, round(c, 4)))
    return out


def _evaluate(ev: _Evaluation, rule: CompiledRule, explain: bool) -> RuleResult:
    score = ev.rule_score(rule)
    if not explain and score < rule.threshold:
        return RuleResult(rule, False, score, (), ev)  # the tree need not be walked
    failed: list[str] | None = [] if explain else None
    holds = ev.holds(rule.root, failed)
    matched = holds and score >= rule.threshold
    if failed is not None and holds and not matched:
        failed.append(f"score {score:g} is below the threshold {rule.threshold:g}")
    return RuleResult(rule, matched, score, tuple(failed or ()), ev)


def match_story(story: Story, ruleset: RuleSet, *, all_rules: bool = True) -> list[RuleResult]:
    """Evaluate the rules on ``story``.

    With ``all_rules=False`` only candidate rules (every concept the rule
    cannot do without was found) are evaluated and returned, without failure
    reasons: the fast path for the daemon. With ``all_rules=True`` every
    rule is evaluated and explained.
    """
    evaluations: dict[bool, _Evaluation] = {}

    def evaluation(folded: bool) -> _Evaluation:
        if folded not in evaluations:
            evaluations[folded] = _Evaluation(story, ruleset, folded)
        return evaluations[folded]

    chosen: list[int]
    if all_rules:
        chosen = list(range(len(ruleset.rules)))
    else:
        candidates: set[int] = set()
        for folded in ruleset.fold_modes:
            present = evaluation(folded).hits_by_slot.keys()
            for slot in present:
                for i in ruleset.rules_by_slot.get(slot, ()):
                    if (
                        ruleset.rules[i].fold_diacritics == folded
                        and ruleset.required_slots[i] <= present
                    ):
                        candidates.add(i)
        chosen = sorted(candidates)
    rules = [ruleset.rules[i] for i in chosen]
    return [_evaluate(evaluation(r.fold_diacritics), r, all_rules) for r in rules]
