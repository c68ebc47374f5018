"""Find every term of every concept in one pass over a text.

All literal terms go into one Aho-Corasick automaton (pyahocorasick), so
the cost of a pass barely grows with the number of rules. Identical
concepts (same terms, same options) share one matcher. Word boundaries are
checked on each hit (Unicode-aware: a letter in any script is a word
character). Regex terms, rare by design, run on their own; lemma terms
compare simplemma lemmas of the text's words.

Pure: text in, hits out.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import ahocorasick
import regex
import simplemma

from monitor.text import strip_diacritics

TermForm = Literal["word", "prefix", "suffix", "infix", "substring", "regex", "lemma"]
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class CompiledTerm:
    text: str  # as written in the rule
    form: TermForm
    key: str  # normalised literal, lemma, or regex source
    lang: str
    weight: float


@dataclass(frozen=True)
class CompiledConcept:
    name: str
    terms: tuple[CompiledTerm, ...]
    exclude: tuple[str, ...]

    def signature(self) -> tuple[object, ...]:
        """Equal for concepts that match exactly alike (they share one matcher)."""
        return (tuple((t.form, t.key, t.lang, t.weight) for t in self.terms), self.exclude)


REGEX_TIMEOUT_S = 0.05

# (term index, start, end) in one field's text.
RawHit = tuple[int, int, int]


@functools.lru_cache(maxsize=200_000)
def lemma_of(word: str, lang: str) -> str:
    """Lower-cased lemma; raises ValueError for a language simplemma lacks."""
    return simplemma.lemmatize(word, lang=lang).lower()


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


class _Automaton:
    """One automaton over the literal terms of every slot."""

    def __init__(self, slots: list[CompiledConcept], fold: bool) -> None:
        entries: dict[str, list[tuple[int, int, bool, bool, bool]]] = defaultdict(list)
        placed: set[tuple[str, int, str]] = set()
        for slot, concept in enumerate(slots):
            for ti, term in enumerate(concept.terms):
                if term.form in ("regex", "lemma"):
                    continue
                left = term.form in ("word", "prefix")
                right = term.form in ("word", "suffix")
                extend = term.form in ("prefix", "suffix", "infix")
                key = strip_diacritics(term.key) if fold else term.key
                variants = {key, key.replace(" ", "-")} if term.form != "substring" else {key}
                for k in variants:
                    # The same term listed under several languages counts once.
                    if (k, slot, term.form) in placed:
                        continue
                    placed.add((k, slot, term.form))
                    entries[k].append((slot, ti, left, right, extend))
        self.empty = not entries
        self._a = ahocorasick.Automaton()
        for k, payload in entries.items():
            self._a.add_word(k, (len(k), tuple(payload)))
        if not self.empty:
            self._a.make_automaton()

    def scan(self, view: str, out: dict[int, list[RawHit]]) -> None:
        if self.empty:
            return
        n = len(view)
        for last, (length, payload) in self._a.iter(view):
            start, end = last - length + 1, last + 1
            before = start > 0 and _is_word(view[start - 1])
            after = end < n and _is_word(view[end])
            for slot, ti, left, right, extend in payload:
                if (left and before) or (right and after):
                    continue
                s, e = start, end
                # Show the whole word a prefix/infix/suffix term landed in.
                while extend and not right and e < n and _is_word(view[e]):
                    e += 1
                while extend and not left and s > 0 and _is_word(view[s - 1]):
                    s -= 1
                out[slot].append((ti, s, e))


class TermIndex:
    """Compiled matchers for a set of concepts; ``scan`` finds all their hits."""

    def __init__(self, concepts: Mapping[str, CompiledConcept], fold: bool) -> None:
        slot_of: dict[tuple[object, ...], int] = {}
        self.slots: list[CompiledConcept] = []
        self.slot_by_name: dict[str, int] = {}
        for name, concept in concepts.items():
            sig = concept.signature()
            if sig not in slot_of:
                slot_of[sig] = len(self.slots)
                self.slots.append(concept)
            self.slot_by_name[name] = slot_of[sig]
        self._plain = _Automaton(self.slots, fold=False)
        self._folded = _Automaton(self.slots, fold=True) if fold else None
        self._regex: list[tuple[int, int, regex.Pattern[str], str]] = [
            (slot, ti, regex.compile(t.key), literal_prefix(t.key))
            for slot, c in enumerate(self.slots)
            for ti, t in enumerate(c.terms)
            if t.form == "regex"
        ]
        lemmas: dict[str, dict[str, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
        for slot, c in enumerate(self.slots):
            for ti, t in enumerate(c.terms):
                if t.form == "lemma":
                    lemmas[t.lang][t.key].append((slot, ti))
        self._lemmas = {lang: dict(table) for lang, table in lemmas.items()}
        self._excluding = [slot for slot, c in enumerate(self.slots) if c.exclude]

    def scan(self, normed: str, *, folded: bool = False) -> dict[int, list[RawHit]]:
        """Hits per slot in one normalised text (offsets are the text's own)."""
        view = normed
        if folded:
            view = strip_diacritics(view)
        out: dict[int, list[RawHit]] = defaultdict(list)
        automaton = self._folded if folded and self._folded else self._plain
        automaton.scan(view, out)
        for slot, ti, rx, prefix in self._regex:
            if prefix and prefix not in view:
                continue  # it cannot match without its literal start: skip the scan
            # A bounded search: a pathological pattern costs one term's hits
            # on one text, never the daemon (see rules.regex_problem).
            with contextlib.suppress(TimeoutError):
                for m in rx.finditer(view, timeout=REGEX_TIMEOUT_S):
                    if m.end() > m.start():
                        out[slot].append((ti, m.start(), m.end()))
        if self._lemmas:
            words = [(m.group(), m.start(), m.end()) for m in _WORD.finditer(view)]
            for lang, table in self._lemmas.items():
                for w, s, e in words:
                    for slot, ti in table.get(lemma_of(w, lang), ()):
                        out[slot].append((ti, s, e))
        for slot, hits in out.items():
            out[slot] = self._one_per_span(slot, hits)
        for slot in self._excluding:
            if slot in out:
                excl = self.slots[slot].exclude
                if folded:
                    excl = tuple(strip_diacritics(e) for e in excl)
                out[slot] = _drop_excluded(view, excl, out[slot])
        return out

    def _one_per_span(self, slot: int, hits: list[RawHit]) -> list[RawHit]:
        """Where several terms of a concept cover the same text, the heaviest counts."""
        terms = self.slots[slot].terms
        best: dict[tuple[int, int], int] = {}
        for ti, s, e in hits:
            held = best.get((s, e))
            if held is None or terms[ti].weight > terms[held].weight:
                best[(s, e)] = ti
        return sorted(((ti, s, e) for (s, e), ti in best.items()), key=lambda h: h[1])


_META = set(".^$*+?{}[]\\|()")


def literal_prefix(pattern: str) -> str:
    """The literal text every match of ``pattern`` starts with ('' if unsure).

    A cheap ``in`` test on it lets most texts skip the regex scan entirely.
    """
    depth = 0
    for ch in pattern:  # a top-level alternative may start differently
        depth += ch == "("
        depth -= ch == ")"
        if ch == "|" and depth == 0:
            return ""
    out: list[str] = []
    for ch in pattern:
        if ch in _META:
            # A quantifier makes the char before it optional or repeated.
            if ch in "*?{" and out:
                out.pop()
            break
        out.append(ch)
    prefix = "".join(out)
    return prefix if len(prefix) >= 3 else ""


def _drop_excluded(view: str, exclude: tuple[str, ...], hits: list[RawHit]) -> list[RawHit]:
    spans = []
    for ex in exclude:
        i = view.find(ex)
        while i != -1:
            spans.append((i, i + len(ex)))
            i = view.find(ex, i + 1)
    return [h for h in hits if not any(a < h[2] and h[1] < b for a, b in spans)]
