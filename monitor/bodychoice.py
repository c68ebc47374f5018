"""What extraction returns (``PageText``) and the page-or-feed choice.

``choose_text`` is the pure function the pipeline calls to decide whether
the page text or the feed's own text is the article body; it says why when
it is not the page. Apart from monitor/extract.py, which produces a
``PageText`` in a worker with lxml and trafilatura: the daemon imports this
module and neither of those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# Below this many characters a page "body" is probably a teaser or a wall.
MIN_BODY_CHARS = 200

# Flags in PageText.flags.
CONSENT_WALL = "consent-wall"
JS_REQUIRED = "javascript-required"
BOT_CHECK = "bot-check"
PAYWALL = "paywall"
NAVIGATION = "navigation"
COMMENTS = "comments"
TRUNCATED = "truncated"


# The extracted text is not the article at all (choose_text never uses it).
NOT_ARTICLE = frozenset({CONSENT_WALL, JS_REQUIRED, BOT_CHECK, NAVIGATION, COMMENTS})


@dataclass(frozen=True)
class PageText:
    """What ``extract_page`` found on a page.

    ``text`` is the article body, plain text, one paragraph a line (empty if
    none was found). ``lang`` is an ISO 639-1 code from the page markup or,
    failing that, detected on the body; ``date`` is ``YYYY-MM-DD`` (the
    page's publication date). ``body_from`` says where ``text`` came from
    ("html" via trafilatura, "json-ld" for schema.org ``articleBody``, "none").
    ``flags`` are the failure modes seen (the module's flag constants).
    """

    title: str
    text: str
    lang: str | None
    date: str | None
    canonical_url: str | None = None
    site_name: str | None = None
    description: str | None = None
    body_from: str = "html"
    flags: tuple[str, ...] = ()
    encoding: str | None = None


@dataclass(frozen=True)
class BodyChoice:
    """The article body the pipeline should match against.

    ``source`` is "page" or "feed"; ``note`` says why the page text was not
    used (None when it was).
    """

    text: str
    source: Literal["page", "feed"]
    note: str | None = None


_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-cased words, for comparing titles and texts."""
    return _WORD.findall(text.lower())


_HARD_FLAGS = {
    CONSENT_WALL: "page is a cookie/consent wall",
    JS_REQUIRED: "page only asks to enable JavaScript",
    BOT_CHECK: "page is a bot check",
    NAVIGATION: "page text is navigation, not an article",
    COMMENTS: "page text is a comment thread, not the article",
}
_SOFT_FLAGS = {
    PAYWALL: "page shows a paywall teaser",
    TRUNCATED: "page text is truncated",
}
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


def _keys(text: str) -> set[str]:
    """Comparison keys of a title: long words, or character pairs for CJK."""
    keys = {w for w in words(text) if len(w) >= 4 and not _CJK.search(w)}
    for run in re.findall(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]+", text):
        keys.update(run[i : i + 2] for i in range(len(run) - 1))
    return keys


def _unrelated(page: PageText, feed_title: str) -> bool:
    """The page shares nothing with the entry's title (a redirect to a home page...)."""
    keys = _keys(feed_title)
    if len(keys) < 3:
        return False
    page_keys = _keys(f"{page.title}\n{page.description or ''}\n{page.text[:3000]}")
    return not keys & page_keys


def choose_text(page: PageText, feed_title: str, fallback: str) -> BodyChoice:
    """The article body: the page text unless the feed's own text (``fallback``,
    plain text) is better. The page text is used unless, in this order:

    - it is empty;
    - it is not an article (flags consent-wall, javascript-required,
      bot-check, navigation, comments): the feed text is used even if it is
      empty, because the page text would only produce false matches;
    - it shares no word with a title of three or more words (a redirect to
      another page);
    - it is a paywall teaser or truncated, or shorter than MIN_BODY_CHARS, and
      the feed text is longer;
    - the feed text is at least twice as long and 500 characters longer (the
      feed carries the full article, the page extraction missed part of it).

    ``note`` names the reason whenever ``source`` is "feed".
    """
    text = page.text.strip()
    if not text:
        return BodyChoice(fallback, "feed", "page had no article text")
    for flag, why in _HARD_FLAGS.items():
        if flag in page.flags:
            return BodyChoice(fallback, "feed", why)
    if _unrelated(page, feed_title):
        return BodyChoice(fallback, "feed", "page text is unrelated to the entry title")
    longer = len(fallback) > len(text)
    for flag, why in _SOFT_FLAGS.items():
        if flag in page.flags and longer:
            return BodyChoice(fallback, "feed", f"{why} ({len(text)} chars); the feed's is longer")
    if len(text) < MIN_BODY_CHARS and longer:
        return BodyChoice(fallback, "feed", f"page text too short ({len(text)} chars)")
    if len(fallback) >= 2 * len(text) and len(fallback) - len(text) >= 500:
        note = f"feed text is much longer than the page text ({len(fallback)} vs {len(text)} chars)"
        return BodyChoice(fallback, "feed", note)
    return BodyChoice(text, "page", None)
