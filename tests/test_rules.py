"""The rule language, table-driven, with plain function calls (pure core)."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.errors import ConfigError
from monitor.matching import Story, match_story, snippet
from monitor.rules import RuleSet, compile_rules
from monitor.text import normalise


def ruleset(concepts: str, match: str, **opts: object) -> RuleSet:
    extra = "".join(f"    {k}: {v}\n" for k, v in opts.items())
    text = (
        "concepts:\n"
        + textwrap.indent(textwrap.dedent(concepts), "  ")
        + "rules:\n  - id: r\n    title: R\n    threshold: 0.5\n"
        + extra
        + "    match:\n"
        + textwrap.indent(textwrap.dedent(match), "      ")
    )
    return compile_rules([("rules.yaml", text)])


def matches(rs: RuleSet, body: str, title: str = "", summary: str = "") -> bool:
    (result,) = match_story(Story(title, summary, body), rs)
    return result.matched


TERMS = [
    # (term, text, should match)
    ("bomber", "Two bombers flew.", False),  # whole word only
    ("bomber", "A bomber flew.", True),
    ("bomber*", "Two bombers flew.", True),
    ("bombefly*", "to strategiske bombefly over havet", True),
    ("*bombefly*", "nye atombombeflyene kom", True),
    ("bombefly*", "nye atombombeflyene kom", False),  # prefix needs a word start
    ("*øvelse", "en fellesøvelse i nord", True),
    ("joint patrol", "a joint  patrol", False),  # a phrase: one space or hyphen
    ("joint patrol", "the joint\npatrol began", True),  # a line break is a space
    ("joint patrol", "the joint-patrol began", True),
    ("tu-95", "two Tu‑95MS bombers", False),  # Tu-95MS is one word
    ("tu-95*", "two Tu‑95MS bombers", True),  # non-breaking hyphen folds
    ("учени*", "совместные учения флотов", True),
    ("китай", "КИТАЙ и Россия", True),  # case folds in Cyrillic
    ("中俄", "中俄举行联合巡航", True),  # CJK: substring
    ("联合巡航", "中俄举行联合巡航", True),
    ("ＮＡＴＯ", "NATO members", True),  # full-width folds (NFKC)
    ("/h-6[a-z]?/", "Chinese H-6K bombers", True),
    ("øvelse", "ovelse", False),  # ø is not o (no diacritic folding by default)
    ("«samarbeid»", '"samarbeid"', True),  # quotes fold
    ("중국", "중국과 러시아", True),  # Korean: particles attach to the noun
    ("중국", "미중국방", False),  # ...but the term must start the word
    ("الصين", "روسيا والصين", True),  # Arabic: clitics attach at both ends
]


@pytest.mark.parametrize(("term", "text", "expected"), TERMS)
def test_term_forms(term: str, text: str, expected: bool) -> None:
    rs = ruleset(f"c:\n  terms: {{any: ['{term}']}}\n", "all: [c]\n")
    assert matches(rs, text) is expected


def test_cjk_hit_is_the_term_not_the_whole_run() -> None:
    rs = ruleset("c:\n  terms: {zh: [北极]}\n", "all: [c]\n")
    (result,) = match_story(Story("", "", "中国破冰船完成北极航行"), rs)
    assert [h.text for h in result.hits] == ["北极"]


def test_score_is_the_sum_of_contributions_and_repeats_across_languages_count_once() -> None:
    rs = ruleset(
        "c:\n  terms: {en: [china, 'chin*'], nb: [kina, china], sv: [kina]}\n", "all: [c]\n"
    )
    (result,) = match_story(Story("China and China", "", "Kina, kina."), rs)
    assert result.score == round(sum(h.contribution for h in result.hits), 4)
    # title: china 3 + 1.5; body: kina 1 + 0.5; 'chin*' adds nothing on the same spans
    assert result.score == 6.0


def test_cjk_exclusion_drops_false_hits() -> None:
    rs = ruleset("c:\n  terms: {zh: [东海]}\n  exclude: [广东海关]\n", "all: [c]\n")
    assert not matches(rs, "广东海关查获走私")
    assert matches(rs, "东海海域的联合巡航")


def test_lemma_terms_keep_china_and_whale_apart() -> None:
    rs = ruleset("c:\n  terms: {ru: [{lemma: Китай}]}\n", "all: [c]\n")
    assert matches(rs, "визит в Китае")
    assert matches(rs, "с Китаем")
    assert not matches(rs, "стая кита у берега")  # кита: whale, not China


def test_diacritic_folding_is_per_rule() -> None:
    concepts = "c:\n  terms: {pt: [são paulo]}\n"
    assert not matches(ruleset(concepts, "all: [c]\n"), "em Sao Paulo")
    assert matches(ruleset(concepts, "all: [c]\n", fold_diacritics="true"), "em Sao Paulo")


PAIRS = "a:\n  terms: {en: [alpha]}\nb:\n  terms: {en: [beta]}\nc:\n  terms: {en: [gamma]}\n"


@pytest.mark.parametrize(
    ("match", "text", "expected"),
    [
        ("all: [a, b]\n", "alpha beta", True),
        ("all: [a, b]\n", "alpha", False),
        ("any: [a, b]\n", "beta", True),
        ("all: [a]\nnone: [c]\n", "alpha gamma", False),
        ("all: [a]\nnone: [c]\n", "alpha", True),
        ("at_least: 2\nof: [a, b, c]\n", "alpha gamma", True),
        ("at_least: 2\nof: [a, b, c]\n", "gamma", False),
        ("any: [{all: [a, b]}, c]\n", "gamma", True),
        ("near: [a, b]\nwithin: sentence\n", "alpha here. beta there.", False),
        ("near: [a, b]\nwithin: sentence\n", "alpha and beta. gamma.", True),
        ("near: [a, b]\nwithin: paragraph\n", "alpha here. beta there.", True),
        ("near: [a, b]\nwithin: paragraph\n", "alpha here.\n\nbeta there.", False),
        ("near: [a, b]\nwithin: 3\n", "alpha one two beta", True),
        ("near: [a, b]\nwithin: 3\n", "alpha one two three four beta", False),
    ],
)
def test_logic_and_proximity(match: str, text: str, expected: bool) -> None:
    assert matches(ruleset(PAIRS, match), text) is expected


def test_field_weights_and_diminishing_repeats() -> None:
    rs = ruleset("a:\n  terms: {en: [alpha]}\n", "all: [a]\n")
    (title_hit,) = match_story(Story("alpha", "", ""), rs)
    (body_hit,) = match_story(Story("", "", "alpha"), rs)
    (repeated,) = match_story(Story("", "", "alpha alpha alpha"), rs)
    assert title_hit.score == 3.0  # default title weight
    assert body_hit.score == 1.0
    assert repeated.score == 1.75  # 1 + 0.5 + 0.25


def test_threshold_and_explanation_of_a_miss() -> None:
    rs = compile_rules(
        [
            (
                "r.yaml",
                "concepts:\n  a: {terms: {en: [alpha]}}\n  b: {terms: {en: [beta]}}\n"
                "rules:\n  - id: r\n    title: R\n    threshold: 5\n"
                "    match: {all: [a, b]}\n",
            )
        ]
    )
    (low,) = match_story(Story("", "", "alpha beta"), rs)
    assert not low.matched
    assert any("below the threshold 5" in f for f in low.failed)
    (missing,) = match_story(Story("", "", "alpha"), rs)
    assert any("'b'" in f for f in missing.failed)


def test_hits_explain_offsets_snippets_and_contributions() -> None:
    rs = ruleset("a:\n  terms: {en: [alpha*]}\n", "all: [a]\n")
    story = Story("", "", "Before the ALPHAS came.")
    (result,) = match_story(story, rs)
    (hit,) = result.hits
    assert story.body[hit.start : hit.end] == "ALPHAS"
    assert hit.text == "ALPHAS"
    assert "ALPHAS" in snippet(story, hit)
    assert hit.contribution == 1.0


ERRORS = [
    # (rule file text, line, message fragment)
    ("concepts:\n  a: {terms: {en: [x]}}\nrules:\n  - id: r\n    title: R\n"
     "    match: {all: [a, zz]}\n", 6, "unknown concept 'zz'"),
    ("concepts:\n  a:\n    terms: {en: ['/(unclosed/']}\n", 3, "invalid regex"),
    ("concepts:\n  a: {terms: {en: [x]}}\nrules:\n  - id: r\n    title: R\n"
     "    match: {all: []}\n", 6, "non-empty list"),
    ("concepts:\n  a: {terms: {en: [x]}}\nrules:\n  - id: r\n    title: R\n"
     "    match: {all: [a]}\n  - id: r\n    title: S\n    match: {all: [a]}\n", 7,
     "already used"),
    ("concepts:\n  a: {terms: {en: [x]}}\nrules:\n  - id: r\n    title: R\n"
     "    thresold: 2\n    match: {all: [a]}\n", 6, "unknown key"),
    ("concepts:\n  a: {terms: {en: [x]}}\nrules:\n  - id: r\n    title: R\n"
     "    match: {near: [a], within: sentence}\n", 6, "two or more"),
    ("concepts:\n  a: {terms: {en: [x]}}\nrules:\n  - id: r\n    title: R\n"
     "    match: {at_least: 3, of: [a]}\n", 6, "can never hold"),
    ("concepts:\n  a: {terms: {ru: [{lemma: Китай, term: x}]}}\n", 2, "exactly one"),
    ("concepts:\n  a: {terms: {en: [x]}\n", 3, "invalid YAML"),
    ("concepts:\n  a:\n    terms: {en: ['a* b*']}\n", 3, "may only start or end"),
    ("concepts:\n  a:\n    terms: {en: ['/(a|aa)+$/']}\n", 3, "backtracks catastrophically"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "fragment"), ERRORS)
def test_invalid_rules_are_located_and_explained(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_rules([("pack.yaml", text)])
    first = str(info.value.problems[0])
    assert first.startswith(f"pack.yaml:{line}:"), first
    assert fragment in first


def test_every_problem_in_every_file_is_reported_at_once() -> None:
    bad = "concepts:\n  a: {terms: {en: ['/(/']}}\n  b: {terms: {en: ['/[/']}}\n"
    with pytest.raises(ConfigError) as info:
        compile_rules([("one.yaml", bad), ("two.yaml", "rules: 5\n")])
    files = [p.file for p in info.value.problems]
    assert files.count("one.yaml") == 2
    assert "two.yaml" in files


def test_disabled_rules_are_validated_but_not_run() -> None:
    rs = ruleset(PAIRS, "all: [a]\n", enabled="false")
    assert rs.rules == ()


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_normalise_keeps_length_and_is_idempotent(text: str) -> None:
    once = normalise(text)
    assert len(once) == len(text)
    assert normalise(once) == once


DEFAULT_LIKE = ruleset(
    "a:\n  terms: {en: [alpha, 'be*', '*ta'], zh: [中俄], ru: [{lemma: Китай}]}\n"
    "b:\n  terms: {en: ['/g.mma/', two words]}\n",
    "any: [{near: [a, b], within: 4}, {all: [a, {none: [b]}]}]\n",
)


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text(), st.text())
def test_matcher_never_raises_and_offsets_point_at_the_text(t: str, s: str, b: str) -> None:
    story = Story(t, s, b)
    for result in match_story(story, DEFAULT_LIKE):
        for hit in result.hits:
            assert story.field(hit.field)[hit.start : hit.end] == hit.text
            assert hit.text


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        (r"совместн\w* учени", "совместн"),
        (r"abcd*e", "abc"),  # the 'd' may be absent
        (r"boev+x", "boev"),  # '+' keeps it
        (r"abc|def", ""),  # alternatives start differently
        (r"(?:a|b)cde", ""),
        (r"ab\w", ""),  # too short to be worth a test
    ],
)
def test_regex_literal_prefix_is_safe(pattern: str, prefix: str) -> None:
    from monitor.termindex import literal_prefix

    assert literal_prefix(pattern) == prefix


def test_prefiltered_regex_still_matches() -> None:
    rs = ruleset("c:\n  terms: {ru: ['/совместн\\w* учени\\w*/']}\n", "all: [c]\n")
    assert matches(rs, "Начались совместные учения флотов.")
    assert not matches(rs, "Начались учения флотов.")
