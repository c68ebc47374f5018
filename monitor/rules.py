"""Watch rules: the YAML spec, its validation, and compilation to matchers.

A rule file holds ``concepts`` (named term lists, per language) and
``rules`` (a boolean tree over concepts, a threshold and field weights).
Concepts are shared by every rule file the config loads. Compilation is
pure: text in, ``RuleSet`` out, or a ConfigError listing every problem with
file:line:column. Nothing invalid is ever silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import regex
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from monitor.config import validation_problems
from monitor.errors import ConfigError, Problem
from monitor.termindex import CompiledConcept, CompiledTerm, TermForm, TermIndex, lemma_of
from monitor.text import normalise
from monitor.yamlsource import SourcedYaml, parse_yaml

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
# Scripts written without spaces: their terms match as substrings.
_NO_SPACE_SCRIPT = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0e7f]"
)
# Korean attaches particles to the noun (중국과, 중국의): a term is a prefix.
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
# Arabic attaches clitics at both ends (والصين): a term matches inside a word.
_ARABIC = re.compile(r"[\u0600-\u06ff\u0750-\u077f]")
_LOGIC_KEYS = {"all", "any", "none", "at_least", "of", "near", "within"}

Field_ = Literal["title", "summary", "body"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TermSpec(_Model):
    """A term with options: ``{term: x, weight: 2}`` or ``{lemma: Китай}``."""

    term: str | None = None
    # Matches any inflected form whose lemma (simplemma, in the list's
    # language) is this word's lemma: Китая, Китаем -> Китай, but not кита.
    lemma: str | None = None
    weight: Annotated[float, Field(gt=0, le=100)] = 1.0

    @model_validator(mode="after")
    def _one_of(self) -> TermSpec:
        if (self.term is None) == (self.lemma is None):
            raise ValueError("give exactly one of 'term' or 'lemma'")
        return self


def _term_item(value: Any) -> Any:
    # A bare string is shorthand for {term: ...}; one type means one clear
    # error message, not one per member of a union.
    return {"term": value} if isinstance(value, str) else value


TermItem = Annotated[
    TermSpec,
    BeforeValidator(_term_item),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "description": "word, phrase, pre*, *mid*, *suf or /regex/"},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "term": {"type": "string"},
                        "lemma": {"type": "string"},
                        "weight": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                    },
                    "oneOf": [{"required": ["term"]}, {"required": ["lemma"]}],
                },
            ]
        }
    ),
]


class ConceptSpec(_Model):
    """A named group of terms, listed per language (any key: en, nb, zh, ...)."""

    terms: dict[str, list[TermItem]]
    # Substrings whose hits are false (e.g. 东海 inside 广东海关).
    exclude: list[str] = []
    weight: Annotated[float, Field(gt=0, le=100)] = 1.0


class FieldWeights(_Model):
    title: Annotated[float, Field(ge=0)] = 3.0
    summary: Annotated[float, Field(ge=0)] = 1.5
    body: Annotated[float, Field(ge=0)] = 1.0


class RuleSpec(_Model):
    id: str
    title: str
    description: str = ""
    enabled: bool = True
    threshold: Annotated[float, Field(ge=0)] = 1.0
    channels: list[str] = []
    fields: FieldWeights = FieldWeights()
    # Match "Sao Paulo" for "São Paulo". Off by default: in Norwegian ø, æ
    # and å are letters of their own, not accented o, a.
    fold_diacritics: bool = False
    # A story already alerted on changes (new headline or text): ignore it,
    # or raise a new alert whose `updates` names the first one.
    on_update: Literal["ignore", "realert"] = "ignore"
    match: Any

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError("use lower-case letters, digits, '-' or '_' (at most 80)")
        return v


class RuleFileSpec(_Model):
    concepts: dict[str, ConceptSpec] = {}
    rules: list[RuleSpec] = []


# --- compiled forms -------------------------------------------------------


@dataclass(frozen=True)
class ConceptRef:
    concept: str


@dataclass(frozen=True)
class Group:
    op: Literal["all", "any", "none"]
    children: tuple[Node, ...]


@dataclass(frozen=True)
class AtLeast:
    n: int
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Near:
    concepts: tuple[str, ...]
    within: Literal["sentence", "paragraph"] | int


Node = ConceptRef | Group | AtLeast | Near


@dataclass(frozen=True)
class CompiledRule:
    id: str
    title: str
    description: str
    threshold: float
    channels: tuple[str, ...]
    field_weights: Mapping[str, float]
    root: Node
    concepts: tuple[str, ...]  # concepts that score (positive part of the tree)
    source: str  # file:line, for explanations and logs
    fold_diacritics: bool = False
    # Concepts without which the tree cannot hold: the candidate filter.
    required: tuple[str, ...] = ()
    on_update: str = "ignore"

    @cached_property
    def weights(self) -> tuple[float, ...]:
        """Field weights in the matcher's field order (title, summary, body)."""
        return tuple(self.field_weights.get(f, 1.0) for f in ("title", "summary", "body"))


@dataclass(frozen=True)
class RuleSet:
    concepts: Mapping[str, CompiledConcept]
    rules: tuple[CompiledRule, ...]
    files: tuple[str, ...] = ()
    index: TermIndex = field(default_factory=lambda: TermIndex({}, fold=False))
    # slot -> indices of the rules that score on it: the candidate index.
    rules_by_slot: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    # Per rule: the slots that must all have hits for it to be a candidate.
    required_slots: tuple[frozenset[int], ...] = ()

    @cached_property
    def fold_modes(self) -> frozenset[bool]:
        """Which text views the rules need: plain, diacritics folded, or both."""
        return frozenset(r.fold_diacritics for r in self.rules)


# --- compilation ----------------------------------------------------------


def parse_term(raw: str, lang: str) -> tuple[TermForm, str]:
    """The form of a term as written, and its key on normalised text.

    ``word`` whole word (several words: a phrase); ``pre*`` prefix; ``*mid*``
    infix (compound heads: ``*bombefly*`` in ``atombombeflyene``); ``*suf``
    suffix; ``/re/`` a regex on normalised text; terms in Chinese or
    Japanese script match as substrings, since those scripts have no spaces.
    """
    if len(raw) > 2 and raw.startswith("/") and raw.endswith("/"):
        return "regex", raw[1:-1]
    t = normalise(raw.strip())
    lead, trail = t.startswith("*"), t.endswith("*")
    key = " ".join(t.strip("*").split())
    if _NO_SPACE_SCRIPT.search(key):
        return "substring", key
    if _ARABIC.search(key) and not (lead or trail):
        return "infix", key
    if _HANGUL.search(key) and not (lead or trail):
        return "prefix", key
    if lead and trail:
        return "infix", key
    if trail:
        return "prefix", key
    if lead:
        return "suffix", key
    return "word", key


# Inputs on which patterns with nested repetition backtrack for ages.
_PROBES = tuple(c * 28 + "!" for c in ("a", "0", " ", "ab", "a ", ".", "-"))
PROBE_TIMEOUT_S = 0.05


def regex_problem(pattern: str) -> str | None:
    """Why a regex term cannot be used, or None.

    Besides syntax, catches catastrophic backtracking (``(a|aa)+$``) by
    timing the pattern on strings that trigger it; the matcher also bounds
    every regex search at run time.
    """
    try:
        rx = regex.compile(pattern)
    except regex.error as exc:
        return f"invalid regex: {exc}"
    if rx.match(""):
        return "matches empty text"
    for probe in _PROBES:
        try:
            rx.search(probe, timeout=PROBE_TIMEOUT_S)
        except TimeoutError:
            return "backtracks catastrophically (nested repetition?); simplify it"
    return None


def _compile_concept(name: str, spec: ConceptSpec, src: SourcedYaml) -> CompiledConcept:
    terms: list[CompiledTerm] = []
    problems: list[Problem] = []
    for lang, items in spec.terms.items():
        for i, item in enumerate(items):
            t = item
            path = ("concepts", name, "terms", lang, i)
            weight = t.weight * spec.weight
            if t.lemma is not None:
                try:
                    key = lemma_of(t.lemma, lang)
                except ValueError as exc:
                    problems.append(src.problem(path, f"cannot lemmatise in {lang!r}: {exc}"))
                    continue
                terms.append(CompiledTerm(t.lemma, "lemma", key, lang, weight))
                continue
            raw = t.term or ""
            if not raw.strip("*/ "):
                problems.append(src.problem(path, "empty term"))
                continue
            form, key = parse_term(raw, lang)
            if form != "regex" and "*" in key:
                msg = f"{raw!r}: '*' may only start or end a term (pre*, *mid*, *suf)"
                problems.append(src.problem(path, msg))
                continue
            if form == "regex":
                why = regex_problem(key)
                if why:
                    problems.append(src.problem(path, f"regex {raw!r}: {why}"))
                    continue
            terms.append(CompiledTerm(raw, form, key, lang, weight))
    if not terms and not problems:
        msg = "a concept needs at least one term"
        problems.append(src.problem(("concepts", name, "terms"), msg))
    if problems:
        raise ConfigError(problems)
    return CompiledConcept(name, tuple(terms), tuple(normalise(e) for e in spec.exclude))


def _compile_node(
    raw: Any, path: tuple[str | int, ...], src: SourcedYaml, known: Mapping[str, Any]
) -> Node:
    def bad(msg: str, at: tuple[str | int, ...] = path) -> ConfigError:
        return ConfigError([src.problem(at, msg)])

    if isinstance(raw, str):
        if raw not in known:
            raise bad(f"unknown concept {raw!r}; define it under 'concepts:'")
        return ConceptRef(raw)
    if not isinstance(raw, dict) or not raw:
        raise bad("expected a concept name or a mapping with all/any/none/at_least/near")
    unknown = set(raw) - _LOGIC_KEYS
    if unknown:
        k = sorted(map(str, unknown))[0]
        raise bad(f"unknown key {k!r}; expected all, any, none, at_least+of or near", (*path, k))
    if "near" in raw:
        return _compile_near(raw, path, src, known)
    if "within" in raw:
        raise bad("'within' only goes with 'near'")
    nodes: list[Node] = []
    if "at_least" in raw or "of" in raw:
        n, of = raw.get("at_least"), raw.get("of")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise bad("'at_least' needs a positive whole number", (*path, "at_least"))
        kids = _children(of, (*path, "of"), src, known)
        if n > len(kids):
            raise bad(f"at_least {n} of only {len(kids)} items can never hold", (*path, "at_least"))
        nodes.append(AtLeast(n, kids))
    for op in ("all", "any", "none"):
        if op in raw:
            nodes.append(Group(op, _children(raw[op], (*path, op), src, known)))
    return nodes[0] if len(nodes) == 1 else Group("all", tuple(nodes))


def _children(
    raw: Any, path: tuple[str | int, ...], src: SourcedYaml, known: Mapping[str, Any]
) -> tuple[Node, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError([src.problem(path, "expected a non-empty list")])
    return tuple(_compile_node(item, (*path, i), src, known) for i, item in enumerate(raw))


def _compile_near(
    raw: dict[str, Any], path: tuple[str | int, ...], src: SourcedYaml, known: Mapping[str, Any]
) -> Near:
    extra = set(raw) - {"near", "within"}
    if extra:
        k = sorted(map(str, extra))[0]
        raise ConfigError([src.problem((*path, k), "'near' takes only 'within' beside it")])
    names = raw["near"]
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) for n in names):
        raise ConfigError([src.problem((*path, "near"), "expected a list of two or more concepts")])
    for i, n in enumerate(names):
        if n not in known:
            raise ConfigError([src.problem((*path, "near", i), f"unknown concept {n!r}")])
    within = raw.get("within", "sentence")
    ok_int = isinstance(within, int) and not isinstance(within, bool) and within > 0
    if within not in ("sentence", "paragraph") and not ok_int:
        msg = "expected 'sentence', 'paragraph' or a number of words"
        raise ConfigError([src.problem((*path, "within"), msg)])
    return Near(tuple(names), within)


def required_concepts(node: Node) -> set[str]:
    """Concepts that must be present for ``node`` to hold."""
    match node:
        case ConceptRef(concept=c):
            return {c}
        case Near(concepts=cs):
            return set(cs)
        case Group(op="all", children=kids):
            return set().union(*(required_concepts(k) for k in kids))
        case Group(op="any", children=kids) | AtLeast(children=kids):
            # Conservative for at_least: only what every child needs.
            return set.intersection(*(required_concepts(k) for k in kids))
    return set()


def scoring_concepts(node: Node) -> list[str]:
    """Concepts in the positive part of a tree (not under ``none``)."""
    match node:
        case ConceptRef(concept=c):
            return [c]
        case Near(concepts=cs):
            return list(cs)
        case Group(op="none"):
            return []
        case Group(children=kids) | AtLeast(children=kids):
            return [c for k in kids for c in scoring_concepts(k)]
    return []


@dataclass
class _Loaded:
    src: SourcedYaml
    spec: RuleFileSpec


def _load_file(text: str, file: str) -> _Loaded:
    src = parse_yaml(text, file)
    data = src.data if src.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError([src.problem((), "a rule file must be a mapping with concepts/rules")])
    try:
        return _Loaded(src, RuleFileSpec.model_validate(data))
    except ValidationError as exc:
        raise ConfigError(validation_problems(src, exc)) from None


def compile_rules(sources: Sequence[tuple[str, str]]) -> RuleSet:
    """Compile ``(file name, YAML text)`` pairs into one RuleSet.

    Collects problems across all files and raises them together, so a user
    fixing a file sees every mistake at once.
    """
    problems: list[Problem] = []
    loaded: list[_Loaded] = []
    for file, text in sources:
        try:
            loaded.append(_load_file(text, file))
        except ConfigError as exc:
            problems.extend(exc.problems)
    concepts: dict[str, CompiledConcept] = {}
    concept_home: dict[str, str] = {}
    for lf in loaded:
        for name, cspec in lf.spec.concepts.items():
            if name in concepts:
                msg = f"concept {name!r} is already defined in {concept_home[name]}"
                problems.append(lf.src.problem(("concepts", name), msg))
                continue
            try:
                concepts[name] = _compile_concept(name, cspec, lf.src)
                concept_home[name] = lf.src.file
            except ConfigError as exc:
                problems.extend(exc.problems)
    rules: list[CompiledRule] = []
    rule_home: dict[str, str] = {}
    known = {**{n: True for lf in loaded for n in lf.spec.concepts}}
    for lf in loaded:
        for i, rspec in enumerate(lf.spec.rules):
            line, _ = lf.src.locate(("rules", i))
            where = f"{lf.src.file}:{line}"
            if rspec.id in rule_home:
                msg = f"rule id {rspec.id!r} is already used at {rule_home[rspec.id]}"
                problems.append(lf.src.problem(("rules", i, "id"), msg))
                continue
            rule_home[rspec.id] = where
            try:
                root = _compile_node(rspec.match, ("rules", i, "match"), lf.src, known)
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            if not rspec.enabled:
                continue
            rules.append(
                CompiledRule(
                    id=rspec.id,
                    title=rspec.title,
                    description=rspec.description,
                    threshold=rspec.threshold,
                    channels=tuple(rspec.channels),
                    field_weights=rspec.fields.model_dump(),
                    root=root,
                    concepts=tuple(dict.fromkeys(scoring_concepts(root))),
                    source=where,
                    fold_diacritics=rspec.fold_diacritics,
                    required=tuple(sorted(required_concepts(root))),
                    on_update=rspec.on_update,
                )
            )
    if problems:
        raise ConfigError(problems)
    index = TermIndex(concepts, fold=any(r.fold_diacritics for r in rules))
    by_slot: dict[int, list[int]] = {}
    for i, rule in enumerate(rules):
        # Index a rule under one concept it cannot do without, if it has
        # one; else under each concept it scores on.
        keys = rule.required[:1] or rule.concepts
        for slot in {index.slot_by_name[c] for c in keys}:
            by_slot.setdefault(slot, []).append(i)
    files = tuple(lf.src.file for lf in loaded)
    required = tuple(frozenset(index.slot_by_name[c] for c in r.required) for r in rules)
    return RuleSet(
        concepts, tuple(rules), files, index, {s: tuple(v) for s, v in by_slot.items()}, required
    )


def load_rules(files: Sequence[Path]) -> RuleSet:
    """Read and compile rule files (the I/O wrapper around ``compile_rules``)."""
    sources: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for f in files:
        try:
            sources.append((str(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(f), None, None, "", f"cannot read rule file: {exc}"))
    if problems:
        raise ConfigError(problems)
    return compile_rules(sources)
