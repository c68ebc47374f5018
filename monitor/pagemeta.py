"""What an HTML page says about itself: charset, meta tags, JSON-LD.

Pure and offline (no network I/O): ``decode_html`` turns the raw bytes of a
page into text, honouring a charset declared only in a ``<meta>`` tag;
``parse_html`` builds an lxml tree from it; ``read_meta`` collects the
page's own statements about itself - title, description, site name,
canonical URL, language, publication date and the schema.org
``NewsArticle``/``Article`` JSON-LD (``articleBody``, ``isAccessibleForFree``),
including objects nested in ``@graph`` and in lists.
"""

from __future__ import annotations

import codecs
import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import charset_normalizer
import lxml.etree
import lxml.html

# --- decoding ----------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# <meta charset=...>, <meta http-equiv="Content-Type" content="...; charset=...">
# and <?xml ... encoding="..."?>, in the first bytes as the HTML spec prescribes.
_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.+-]+)"""
    rb"""|<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_:.+-]+)""",
    re.IGNORECASE,
)
_PRESCAN_BYTES = 4096
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# WHATWG encoding-standard aliases: browsers decode these labels as the superset.
_WHATWG = {
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso-8859-9": "cp1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "big5": "big5hkscs",
    "x-user-defined": "cp1252",
}


def _codec(label: str) -> str | None:
    name = label.strip().lower()
    name = _WHATWG.get(name, name)
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    # A page that says UTF-16 in a <meta> tag is, by the spec, not UTF-16.
    return "utf-8" if codec.startswith("utf-16") or codec.startswith("utf-32") else codec


def _decode_utf8(data: bytes) -> str | None:
    """The text if ``data`` is UTF-8, allowing a character cut by truncation."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A byte cap can split the last multi-byte character: that is still UTF-8.
        if exc.reason == "unexpected end of data" and exc.start >= len(data) - 3:
            try:
                return data[: exc.start].decode("utf-8")
            except UnicodeDecodeError:
                return None
        return None


def decode_html(data: bytes) -> tuple[str, str]:
    """``(text, encoding)`` of an HTML page given as bytes.

    A byte-order mark wins; then valid UTF-8 (a page that is valid UTF-8 but
    declares a legacy charset is almost always mislabelled); then the charset
    declared in a ``<meta>`` tag or XML declaration in the first 4 KiB (with
    the browsers' aliases: ISO-8859-1 is windows-1252, Shift_JIS is cp932);
    then UTF-8 if valid multi-byte characters outnumber invalid bytes four to
    one; then charset detection. Never an exception: bad bytes are replaced.
    """
    for bom, enc in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(enc, errors="replace"), enc
    text = _decode_utf8(data)
    if text is not None:
        return text, "utf-8"
    for m in _META_CHARSET.finditer(data[:_PRESCAN_BYTES]):
        label = (m.group(1) or m.group(2) or b"").decode("ascii", errors="replace")
        codec = _codec(label)
        if codec and codec != "utf-8":
            return data.decode(codec, errors="replace"), codec
    # UTF-8 with a few stray bytes (said so or not) is still UTF-8.
    lenient = data.decode("utf-8", errors="replace")
    bad = lenient.count("\ufffd")
    if len(_NON_ASCII.findall(lenient)) - bad >= 4 * bad:  # valid sequences dominate
        return lenient, "utf-8"
    sample = data if len(data) <= 65536 else data[:32768] + data[-32768:]
    best = charset_normalizer.from_bytes(sample).best()
    if best is not None:
        codec = _codec(best.encoding)
        if codec:
            return data.decode(codec, errors="replace"), codec
    return data.decode("utf-8", errors="replace"), "utf-8"


_PARSER = lxml.etree.HTMLParser(
    collect_ids=False,
    default_doctype=False,
    encoding="utf-8",
    remove_comments=True,
    remove_pis=True,
)
# Every element an HtmlElement (trafilatura needs one), chosen in C. lxml.html's
# own parser asks a Python function for each element's class, to give form
# fields theirs (nothing here uses them): 3-4% of an extraction's time.
_PARSER.set_element_class_lookup(
    lxml.etree.ElementDefaultClassLookup(
        element=lxml.html.HtmlElement,
        comment=lxml.html.HtmlComment,
        pi=lxml.html.HtmlProcessingInstruction,
        entity=lxml.html.HtmlEntity,
    )
)
_INVALID_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def parse_html(text: str) -> lxml.html.HtmlElement | None:
    """An lxml tree of the page (None if it has no markup at all)."""
    text = _INVALID_XML.sub("", text)
    if not text.strip():
        return None
    try:
        tree = lxml.html.document_fromstring(text.encode("utf-8"), parser=_PARSER)
    except (lxml.etree.ParserError, ValueError):
        return None
    return tree


# --- meta tags and JSON-LD ------------------------------------------------------

ARTICLE_TYPES = frozenset(
    {
        "article",
        "newsarticle",
        "reportagenewsarticle",
        "analysisnewsarticle",
        "opinionnewsarticle",
        "reviewnewsarticle",
        "backgroundnewsarticle",
        "askpublicnewsarticle",
        "blogposting",
        "liveblogposting",
        "socialmediaposting",
        "techarticle",
        "scholarlyarticle",
        "report",
        "satiricalarticle",
        "advertisercontentarticle",
    }
)
_WS = re.compile(r"[ \t\r\f\v\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_NL = re.compile(r"\s*\n\s*")
_TAGLIKE = re.compile(r"<(?:/?[a-zA-Z][a-zA-Z0-9]*)(?:\s[^<>]*)?/?>")
_LANG = re.compile(r"^([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{1,8})*$")
_ISO_DATE = re.compile(r"^\s*(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
_COMPACT_DATE = re.compile(r"^\s*(\d{4})(\d{2})(\d{2})(?:\D|$)")
_BLOCK_TAGS = (
    "p",
    "div",
    "br",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "tr",
    "section",
    "article",
    "pre",
    "figcaption",
)


@dataclass(frozen=True)
class LdArticle:
    """One schema.org article object found in the page's JSON-LD."""

    type: str
    headline: str | None
    body: str | None
    date: str | None
    lang: str | None
    url: str | None
    description: str | None
    publisher: str | None
    free: bool | None  # isAccessibleForFree, None if not said


@dataclass(frozen=True)
class PageMeta:
    """The page's own statements about itself (None where it says nothing)."""

    title: str | None
    description: str | None
    site_name: str | None
    canonical_url: str | None
    lang: str | None
    date: str | None  # YYYY-MM-DD
    article: LdArticle | None  # the JSON-LD article with the longest body, if any
    html_title: str | None  # the <title> element


def clean_space(text: str) -> str:
    """Collapse runs of spaces; keep single line breaks between paragraphs."""
    text = _WS.sub(" ", text)
    return _NL.sub("\n", text).strip()


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment (or of plain text with entities)."""
    if not _TAGLIKE.search(fragment):
        return clean_space(html.unescape(fragment))
    try:
        root = lxml.html.fragment_fromstring(
            fragment.encode("utf-8"), create_parent="div", parser=_PARSER
        )
    except (lxml.etree.ParserError, ValueError):
        return clean_space(html.unescape(_TAGLIKE.sub(" ", fragment)))
    for bad in root.xpath(".//script|.//style|.//noscript"):
        bad.drop_tree()
    for el in root.iter(*_BLOCK_TAGS):
        el.tail = "\n" + (el.tail or "")
        if el.tag != "br":
            el.text = "\n" + (el.text or "")
    return clean_space(str(root.text_content()))


def norm_lang(value: str | None) -> str | None:
    """ISO 639 primary subtag of a language tag or locale ("en-US", "de_DE" -> "en", "de")."""
    if not value:
        return None
    first = value.split(",")[0].strip()
    m = _LANG.match(first)
    if not m:
        return None
    code = m.group(1).lower()
    return None if code in {"und", "mul", "zxx", "xx"} else code


def norm_date(value: str | None) -> str | None:
    """``YYYY-MM-DD`` of an ISO 8601, compact or RFC 2822 date; None if not a plausible date."""
    if not value:
        return None
    value = value.strip()
    m = _ISO_DATE.match(value) or _COMPACT_DATE.match(value)
    if m:
        y, mo, d = (int(g) for g in m.groups())
    else:
        try:
            dt = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        y, mo, d = dt.year, dt.month, dt.day
    try:
        day = datetime(y, mo, d)
    except ValueError:
        return None
    if not 1990 <= day.year <= 2100:
        return None
    return day.strftime("%Y-%m-%d")


def _s(value: Any) -> str | None:
    """A non-empty string from a JSON-LD value (first of a list, @value, name)."""
    if isinstance(value, list):
        for v in value:
            s = _s(v)
            if s:
                return s
        return None
    if isinstance(value, dict):
        return _s(value.get("@value") or value.get("name") or value.get("@id") or value.get("url"))
    if isinstance(value, str):
        s = value.strip()
        return s or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _types(obj: dict[str, Any]) -> list[str]:
    t = obj.get("@type")
    items = t if isinstance(t, list) else [t]
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item.rsplit("/", 1)[-1].rsplit(":", 1)[-1].lower())
    return out


def _walk(node: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    if depth > 12:
        return
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, depth + 1)
    elif isinstance(node, dict):
        yield node
        for value in node.values():
            if isinstance(value, list | dict):
                yield from _walk(value, depth + 1)


_JS_WRAPPERS = re.compile(
    r"^\s*(?:<!--|//\s*<!\[CDATA\[|/\*\s*<!\[CDATA\[\s*\*/)|(?:-->|//\s*\]\]>|/\*\s*\]\]>\s*\*/)\s*$"
)


def load_json_ld(text: str) -> list[Any]:
    """Every JSON value in a ld+json script; tolerates wrappers, control characters,
    trailing semicolons and several concatenated objects."""
    text = _JS_WRAPPERS.sub("", text).strip().rstrip(";").strip()
    if not text:
        return []
    decoder = json.JSONDecoder(strict=False)
    out: list[Any] = []
    pos = 0
    while pos < len(text):
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break
        out.append(value)
        pos = end
        while pos < len(text) and text[pos] in " \t\r\n,;":
            pos += 1
    return out


def _free(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        v = value.strip().lower()
        if v in {"false", "no", "0"}:
            return False
        if v in {"true", "yes", "1"}:
            return True
    return None


def _ld_article(obj: dict[str, Any], kind: str) -> LdArticle:
    body = _s(obj.get("articleBody")) or _s(obj.get("text"))
    publisher = obj.get("publisher")
    lang = obj.get("inLanguage") or obj.get("language")
    return LdArticle(
        type=kind,
        headline=_text_or_none(_s(obj.get("headline")) or _s(obj.get("name"))),
        body=html_to_text(body) if body else None,
        date=norm_date(_s(obj.get("datePublished")) or _s(obj.get("dateCreated"))),
        lang=norm_lang(_s(lang)),
        url=_s(obj.get("url")) or _s(obj.get("mainEntityOfPage")),
        description=_text_or_none(_s(obj.get("description"))),
        publisher=_s(publisher.get("name")) if isinstance(publisher, dict) else _s(publisher),
        free=_free(obj.get("isAccessibleForFree")),
    )


def _text_or_none(value: str | None) -> str | None:
    return html_to_text(value) or None if value else None


def json_ld_articles(tree: lxml.html.HtmlElement) -> list[LdArticle]:
    """The schema.org article objects of the page's JSON-LD, in document order."""
    found: list[LdArticle] = []
    for script in tree.iter("script"):
        kind = (script.get("type") or "").lower()
        if "ld+json" not in kind or not script.text:
            continue
        for value in load_json_ld(script.text):
            for obj in _walk(value):
                types = _types(obj)
                article = next((t for t in types if t in ARTICLE_TYPES), None)
                if article is not None:
                    found.append(_ld_article(obj, article))
    return found


def _meta_tags(tree: lxml.html.HtmlElement) -> dict[str, str]:
    """First value of each <meta property|name|itemprop|http-equiv> (keys lower-cased)."""
    out: dict[str, str] = {}
    for meta in tree.iter("meta"):
        content = meta.get("content")
        if content is None:
            continue
        content = content.strip()
        if not content:
            continue
        for attr in ("property", "name", "itemprop", "http-equiv"):
            for key in (meta.get(attr) or "").lower().split():
                out.setdefault(key, content)
    return out


def _http_url(value: str | None, base: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    try:
        absolute = urljoin(base, value) if base else value
        parts = urlsplit(absolute)
    except ValueError:
        return None
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return None
    return absolute


_DATE_KEYS = (
    "article:published_time",
    "og:article:published_time",
    "article:published",
    "datepublished",
    "article.published",
    "published_time",
    "publishdate",
    "publish-date",
    "pubdate",
    "pdate",
    "parsely-pub-date",
    "sailthru.date",
    "dc.date.issued",
    "dcterms.date",
    "dcterms.created",
    "dc.date",
    "date",
    "og:published_time",
    "cxenseparse:recs:publishtime",
)
_DESCRIPTION_KEYS = ("og:description", "twitter:description", "description", "dc.description")
_TITLE_KEYS = ("og:title", "twitter:title", "dc.title", "headline")
_LANG_KEYS = ("og:locale", "content-language", "language", "dc.language", "inlanguage")


def _first(meta: dict[str, str], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = meta.get(key)
        if value:
            return value
    return None


def _time_date(tree: lxml.html.HtmlElement) -> str | None:
    for el in tree.iterfind(".//time[@datetime]"):
        if (el.get("itemprop") or "").lower() == "datepublished" or el.get("pubdate") is not None:
            return norm_date(el.get("datetime"))
    return None


def read_meta(tree: lxml.html.HtmlElement, url: str | None) -> PageMeta:
    """Everything the page says about itself; see the module docstring."""
    meta = _meta_tags(tree)
    articles = json_ld_articles(tree)
    article = max(articles, key=lambda a: len(a.body or ""), default=None)
    head_title = None
    for el in tree.iter("title"):
        head_title = clean_space(el.text_content()) or None
        break
    title = _first(meta, _TITLE_KEYS) or (article.headline if article else None) or head_title
    date = norm_date(_first(meta, _DATE_KEYS))
    if date is None:
        date = next((a.date for a in articles if a.date), None) or _time_date(tree)
    html_lang = None
    html_el = tree if tree.tag == "html" else tree.find(".//html")
    if html_el is not None:
        html_lang = norm_lang(html_el.get("lang") or html_el.get("xml:lang"))
        if html_lang is None:
            html_lang = norm_lang(html_el.get("{http://www.w3.org/XML/1998/namespace}lang"))
    lang = (
        (article.lang if article else None)
        or html_lang
        or next((norm_lang(meta.get(k)) for k in _LANG_KEYS if norm_lang(meta.get(k))), None)
    )
    canonical = None
    for link in tree.iter("link"):
        rel = (link.get("rel") or "").lower().split()
        if "canonical" in rel:
            canonical = _http_url(link.get("href"), url)
            if canonical:
                break
    if canonical is None:
        canonical = _http_url(meta.get("og:url"), url)
    site = meta.get("og:site_name") or meta.get("application-name")
    if not site and article is not None:
        site = article.publisher
    description = _first(meta, _DESCRIPTION_KEYS) or (article.description if article else None)
    return PageMeta(
        title=html_to_text(title) if title else None,
        description=html_to_text(description) if description else None,
        site_name=clean_space(site) if site else None,
        canonical_url=canonical,
        lang=lang,
        date=date,
        article=article,
        html_title=head_title,
    )
