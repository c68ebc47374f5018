"""monitor.text: the one normalisation both rule terms and story text go through."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from monitor.text import normalise, strip_diacritics

TRICKY = [
    "ß",  # casefolds to two letters
    "ﬁ",  # ligature: NFKC gives two letters
    "İ",  # lower() gives two code points
    "㎞",  # NFKC gives two letters
    "ǅ",  # title-case digraph
    "\u0345",  # combining ypogegrammeni: casefolds to iota
    "e\u0301",  # decomposed é
    "\u1100\u1161",  # Hangul jamo that NFKC composes into one syllable
    "ﷺ",  # NFKC gives 18 characters
    "🙂",
    "\u2026",  # ellipsis
    "\u207b",  # superscript minus: NFKC gives U+2212, itself folded to "-"
    "\ufe58",  # small em dash: NFKC gives U+2014
]


def test_case_is_folded() -> None:
    assert normalise("Ferry To OSLO") == "ferry to oslo"
    assert normalise("ΣΊΣΥΦΟΣ") == "σίσυφοσ"  # final sigma folds like any sigma
    assert normalise("МОСКВА") == "москва"
    assert normalise("ǅ") == "ǆ"


def test_full_width_forms_fold_to_ascii() -> None:
    assert normalise("ＴＵ－９５") == "tu-95"
    assert normalise("Ｈａｒｂｏｕｒ　ｏｐｅｎ") == "harbour open"
    assert normalise("ｆｅｒｒｙ！") == "ferry!"


def test_nfkc_compatibility_forms() -> None:
    assert normalise("ℌ") == "h"
    assert normalise("①") == "1"
    assert normalise("ｶ") == "カ"  # half-width katakana


@pytest.mark.parametrize(
    "dash",
    ["-", "\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2015", "\u2212", "\ufe63",
     "\uff0d", "\u00ad", "\u207b", "\u208b", "\ufe31", "\ufe32", "\ufe58"],
)  # fmt: skip
def test_every_dash_is_a_hyphen(dash: str) -> None:
    assert normalise(f"Tu{dash}95") == "tu-95"


def test_non_breaking_hyphen_in_tu_95() -> None:
    assert normalise("Tu\u201195") == normalise("tu-95") == "tu-95"
    assert normalise("Il\u201176") == "il-76"


@pytest.mark.parametrize("quote", ["\u201c", "\u201d", "\u201e", "\u00ab", "\u00bb", '"'])
def test_double_quotes_fold(quote: str) -> None:
    assert normalise(f"{quote}Sea{quote}") == '"sea"'


@pytest.mark.parametrize(
    "apostrophe", ["\u2018", "\u2019", "\u201a", "\u201b", "\u2032", "\u00b4", "\u02bc", "'"]
)
def test_single_quotes_fold(apostrophe: str) -> None:
    assert normalise(f"O{apostrophe}Neill") == "o'neill"


@pytest.mark.parametrize("space", ["\u00a0", "\u202f", "\u2009", "\u3000", "\t", "\n", "\r\n"])
def test_spaces_and_line_breaks_fold_to_space(space: str) -> None:
    assert normalise(f"Kola{space}Peninsula") == "kola" + " " * len(space) + "peninsula"


def test_norwegian_letters_are_kept() -> None:
    assert normalise("Blåbærsyltetøy") == "blåbærsyltetøy"
    assert normalise("ØRSTED ÆRØ ÅLESUND") == "ørsted ærø ålesund"
    assert normalise("\u212b") == "å"  # the angstrom sign is NFKC å
    for letter in "øæåØÆÅ":
        assert normalise(letter) not in {"o", "a", "ae"}


def test_offsets_point_at_the_original() -> None:
    text = "Two ＴＵ\u201195 bombers «over» the Barents Sea… ß-Straße"
    folded = normalise(text)
    assert len(folded) == len(text)
    start = folded.index("tu-95")
    assert text[start : start + 5] == "ＴＵ\u201195"
    start = folded.index('"over"')
    assert text[start : start + 6] == "«over»"
    start = folded.index("barents")
    assert text[start : start + 7] == "Barents"


@given(st.text())
@example("".join(TRICKY))
def test_length_is_preserved(text: str) -> None:
    assert len(normalise(text)) == len(text)


@given(st.text())
@example("".join(TRICKY))
def test_idempotent(text: str) -> None:
    once = normalise(text)
    assert normalise(once) == once


@given(st.text())
@example("".join(TRICKY))
@example("Abc. ＤＥＦ. e\u0301. ß.")
def test_same_as_char_by_char(text: str) -> None:
    """The fast paths give what folding each character alone gives."""
    assert normalise(text) == "".join(normalise(ch) for ch in text)


def test_every_code_point_folds_to_one_stable_char() -> None:
    """normalise is per character, so checking every code point covers every string."""
    unstable = []
    for cp in range(sys.maxunicode + 1):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        one = normalise(chr(cp))
        if len(one) != 1 or normalise(one) != one:
            unstable.append(f"U+{cp:04X} {unicodedata.name(chr(cp), '?')}")
    assert unstable == []


@given(st.text())
def test_ascii_output_for_ascii_input(text: str) -> None:
    ascii_text = text.encode("ascii", "ignore").decode()
    assert normalise(ascii_text) == ascii_text.lower().translate(
        str.maketrans("\t\n\r\v\f", "     ")
    )


@given(st.text())
def test_strip_diacritics_preserves_length(text: str) -> None:
    assert len(strip_diacritics(text)) == len(text)


def test_strip_diacritics() -> None:
    assert strip_diacritics("Tromsø café naïve") == "Tromsø cafe naive"
    assert strip_diacritics("Škoda Łódź") == "Skoda Łodz"
