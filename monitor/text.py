"""Text normalisation shared by rule compilation and matching.

Matching compares normalised rule terms with normalised story text, so both
sides must go through exactly the same function. Normalisation keeps the
length of the text unchanged wherever it can, so that offsets found in the
normalised text point at the same characters in the original.
"""

from __future__ import annotations

import re
import unicodedata

# Dashes and quotes that NFKC leaves alone but writers use interchangeably.
_FOLD = str.maketrans(
    {
        "\u2010": "-",  # hyphen
        "\u2011": "-",  # non-breaking hyphen
        "\u2012": "-",  # figure dash
        "\u2013": "-",  # en dash
        "\u2014": "-",  # em dash
        "\u2015": "-",  # horizontal bar
        "\u2212": "-",  # minus sign
        "\ufe63": "-",
        "\uff0d": "-",
        "\u00ad": "-",  # soft hyphen (kept as one char so offsets stay aligned)
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u00b4": "'",
        "\u02bc": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u00a0": " ",
        "\u202f": " ",
        "\u2009": " ",
        "\u3000": " ",
        "\u2026": ".",  # ellipsis; NFKC would make it three chars
        # Any line break or tab is a space to the matcher, so a phrase matches
        # across a line break. (Sentence and paragraph limits are found on the
        # original text, not this.)
        "\t": " ",
        "\n": " ",
        "\r": " ",
        "\v": " ",
        "\f": " ",
        "\x85": " ",
        "\u2028": " ",
        "\u2029": " ",
    }
)


# Full-width ASCII forms (common in Chinese and Japanese punctuation): the
# same as NFKC, done up front so such text stays on the fast path below.
_FOLD.update({cp: chr(cp - 0xFEE0) for cp in range(0xFF01, 0xFF5F)})


_CHUNKS = re.compile(r"[^.]*\.?", re.DOTALL)
# A regex substitution touches only the characters to fold: several times
# faster than str.translate, which looks up every character of the text.
_FOLD_CHARS = {chr(k): v if isinstance(v, str) else chr(v) for k, v in _FOLD.items() if v}
_FOLD_RE = re.compile("[" + "".join(re.escape(c) for c in _FOLD_CHARS) + "]")


def _fold_marks(m: re.Match[str]) -> str:
    return _FOLD_CHARS[m.group()]


def normalise(text: str) -> str:
    """Fold case, compatibility forms, dashes and quotes, character by character.

    Each input character maps to exactly one output character (NFKC then
    case folding, when that gives one character; else its lower case), so
    offsets into the result are offsets into ``text``.
    """
    t = _FOLD_RE.sub(_fold_marks, text)
    if t.isascii():
        return t.lower()
    folded = _fast(t)
    if folded is not None:
        return folded
    # Fold what the fast path can, sentence by sentence; char by char the rest.
    return "".join(_fast(part) or _slow(part) for part in _CHUNKS.findall(t))


def _fast(t: str) -> str | None:
    """Same result as ``_slow`` when it returns: in NFKC text each character
    is its own NFKC form, and casefold() never shrinks, so equal length means
    one-to-one."""
    if unicodedata.is_normalized("NFKC", t):
        folded = t.casefold()
        if len(folded) == len(t):
            return folded
    return None


def _slow(t: str) -> str:
    return "".join(_fold_char(ch) for ch in t)


def _fold_char(ch: str) -> str:
    if ch.isascii():
        return ch.lower()
    folded = unicodedata.normalize("NFKC", ch).casefold()
    if len(folded) == 1:
        # NFKC can yield a dash the first fold had not seen ('⁻' -> '−',
        # '﹘' -> '—'); fold it too, or normalise would not be idempotent.
        return folded.translate(_FOLD)
    if not folded:
        return " "
    # e.g. 'ß' -> 'ss', '㎞' -> 'km': keep one char so offsets hold.
    return lower_one(ch)


def lower_one(ch: str) -> str:
    low = ch.lower()
    return low if len(low) == 1 else ch


def strip_diacritics(text: str) -> str:
    """Remove combining marks, keeping one output char per input char."""
    out = []
    for ch in text:
        base = unicodedata.normalize("NFD", ch)
        out.append(base[0] if base else ch)
    return "".join(out)
