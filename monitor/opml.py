"""Read and write OPML subscription lists; pure: bytes in, values out.

``parse_opml`` reads what feed readers export (OPML 1.0 and 2.0): feeds are
the outlines with an ``xmlUrl`` (any case), folders are outlines without
one and become lower-cased, slugged tags of the feeds inside them, as do the
entries of an OPML 2.0 ``category`` attribute. A URL listed twice is kept
once with the tags of both. Each feed gets a unique, valid name (see
``unique_name``).

The files come from other people, so parsing is defensive: lxml with entity
resolution off, no network and no huge trees, and a document that declares
entities is refused; a billion-laughs bomb or an external entity is an
``OpmlError``, never an expansion or a read. Two mistakes of real exporters
are repaired on a second try: HTML entities such as ``&eacute;`` and
windows-1252 bytes without an encoding declaration.

``to_opml`` writes OPML 2.0 that reads back through ``parse_opml``;
``feeds_yaml`` turns parsed feeds into a ``feeds:`` document for the config.
"""

from __future__ import annotations

import html.entities
import re
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml
from lxml import etree

from monitor.errors import MonitorError

# The FeedSpec name pattern (monitor.config).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_NAME_MAX = 100
_SLUG_MAX = 64
_FOLD = str.maketrans({"ß": "ss", "æ": "ae", "ø": "o", "œ": "oe", "ł": "l", "đ": "d", "þ": "th"})
_NOT_NAME = re.compile(r"[^a-z0-9.]+")
_NOT_TAG = re.compile(r"[\W_]+")
_XML_ENTITIES = frozenset({"amp", "lt", "gt", "quot", "apos"})
_ENTITY_REF = re.compile(rb"&([A-Za-z][A-Za-z0-9]{1,31});")
_DECLARED_ENCODING = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=", re.IGNORECASE)
# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class OpmlError(MonitorError):
    """An OPML document cannot be read; ``line`` is set where lxml gives one."""

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[type[OpmlError], tuple[str, int | None, str]]:
        return (type(self), (self.source, self.line, self.reason))


@dataclass(frozen=True)
class OpmlFeed:
    """One feed read from an OPML file, with the name it will have in the config."""

    name: str
    url: str
    title: str
    tags: tuple[str, ...]
    html_url: str | None
    # Kept when a generated feed list is rewritten; None takes the default.
    interval_s: float | None = None


@dataclass
class _Entry:
    url: str
    title: str
    tags: list[str] = field(default_factory=list)
    html_url: str | None = None


def parse_opml(data: bytes, source: str, *, existing_names: Collection[str] = ()) -> list[OpmlFeed]:
    """The feeds of an OPML document, in document order, named apart from ``existing_names``."""
    root = _parse_xml(data, source)
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise OpmlError(source, None, "the document declares entities; that is not accepted")
    if _local(root) != "opml":
        raise OpmlError(source, root.sourceline, f"not OPML: the root element is <{_local(root)}>")
    body = next((c for c in root if _local(c) == "body"), None)
    if body is None:
        raise OpmlError(source, root.sourceline, "no <body> element")
    entries: dict[str, _Entry] = {}
    stack: list[tuple[Any, tuple[str, ...]]] = [(c, ()) for c in reversed(_outlines(body))]
    while stack:
        el, folder_tags = stack.pop()
        attrs = {str(k).lower(): str(v) for k, v in el.attrib.items()}
        label = _clean(attrs.get("text", "")) or _clean(attrs.get("title", ""))
        child_tags = folder_tags
        raw_url = attrs.get("xmlurl", "").strip()
        if raw_url:
            url = _feed_url(raw_url, source, el.sourceline)
            tags = [*folder_tags, *_category_tags(attrs.get("category", ""))]
            entry = entries.setdefault(_url_key(url), _Entry(url, label))
            entry.title = entry.title or label
            entry.html_url = entry.html_url or _html_url(attrs.get("htmlurl", ""))
            entry.tags.extend(t for t in tags if t not in entry.tags)
        elif tag := _tag_slug(label):
            child_tags = (*folder_tags, tag)
        stack.extend((c, child_tags) for c in reversed(_outlines(el)))
    taken = {n.lower() for n in existing_names}
    feeds = []
    for e in entries.values():
        name = _unique(_base_name(e.title, e.url), taken)
        taken.add(name.lower())
        feeds.append(OpmlFeed(name, e.url, e.title, tuple(e.tags), e.html_url))
    return feeds


def unique_name(title: str, url: str, taken: Collection[str]) -> str:
    """A valid feed name from ``title`` (else host and path), not in ``taken`` (any case).

    Names are lower-case ASCII; a taken name gets ``-2``, ``-3``, ... appended.
    """
    return _unique(_base_name(title, url), {n.lower() for n in taken})


def to_opml(feeds: Sequence[tuple[str, str, Sequence[str]]], title: str) -> bytes:
    """OPML 2.0 (UTF-8) listing ``(name, url, tags)``, each feed in a folder named by its first tag.

    Every tag is also in the feed's ``category`` attribute, so all of them
    read back.
    """
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = _xml_safe(title)
    body = etree.SubElement(root, "body")
    folders: dict[str, Any] = {}
    for name, url, tags in feeds:
        parent = body
        if tags:
            first = _xml_safe(tags[0])
            if first not in folders:
                folders[first] = etree.SubElement(body, "outline", text=first, title=first)
            parent = folders[first]
        attrs = {"type": "rss", "text": name, "title": name, "xmlUrl": url}
        if tags:
            attrs["category"] = ",".join(tags)
        etree.SubElement(parent, "outline", {k: _xml_safe(v) for k, v in attrs.items()})
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return out


def feeds_yaml(feeds: Sequence[OpmlFeed], interval_s: float) -> str:
    """A ``feeds:`` YAML document for the config, one mapping per feed, titles as comments.

    ``interval_s`` is for feeds that carry none of their own."""
    if not 0 < interval_s <= 7 * 86400:
        raise ValueError("interval_s must be more than 0 and at most 7 days")
    if not feeds:
        return "feeds: []\n"
    lines = ["feeds:"]
    for f in feeds:
        comment = " ".join("".join(c if c.isprintable() else " " for c in f.title).split())
        if comment and comment != f.name:
            lines.append(f"  # {comment}")
        own = f.interval_s if f.interval_s is not None else interval_s
        interval: float = int(own) if float(own).is_integer() else own
        item: dict[str, object] = {"name": f.name, "url": f.url, "interval_s": interval}
        if f.tags:
            item["tags"] = _FlowList(f.tags)
        text = yaml.dump([item], Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1 << 20)
        lines.extend(f"  {line}" for line in text.splitlines())
    return "\n".join(lines) + "\n"


class _FlowList(list[str]):
    """Tags, written inline: ``tags: [en, world]``."""


class _Dumper(yaml.SafeDumper):
    """SafeDumper that indents list items under their key; it quotes yes/no/on/... itself."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_flow(dumper: yaml.SafeDumper, data: _FlowList) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    # PyYAML writes NEL and line/paragraph separators raw outside double
    # quotes, where they read back as line breaks: escape such strings.
    style = None if data.isprintable() else '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(_FlowList, _represent_flow)
_Dumper.add_representer(str, _represent_str)


# --- parsing helpers -----------------------------------------------------------


def _parser() -> Any:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        remove_comments=True,
        remove_pis=True,
    )


def _parse_xml(data: bytes, source: str) -> Any:
    try:
        return etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        repaired = _repair(data)
        if repaired is not None:
            try:
                return etree.fromstring(repaired, _parser())
            except etree.XMLSyntaxError:
                pass
        line = exc.lineno if isinstance(exc.lineno, int) and exc.lineno > 0 else None
        raise OpmlError(source, line, f"not well-formed XML: {exc.msg}") from None


def _repair(data: bytes) -> bytes | None:
    """Undeclared windows-1252 and HTML named entities fixed, or None if nothing to fix."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data[:64]:
        return None  # UTF-16/32: lxml decodes those itself, nothing to repair
    fixed = data
    if not data.startswith(b"\xef\xbb\xbf") and not _DECLARED_ENCODING.match(data):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            fixed = data.decode("cp1252", errors="replace").encode("utf-8")

    def numeric(m: re.Match[bytes]) -> bytes:
        name = m.group(1).decode("ascii")
        text = html.entities.html5.get(f"{name};")
        if name in _XML_ENTITIES or text is None:
            return m.group(0)
        return "".join(f"&#{ord(c)};" for c in text).encode("ascii")

    fixed = _ENTITY_REF.sub(numeric, fixed)
    return None if fixed == data else fixed


def _local(el: Any) -> str:
    return str(etree.QName(el).localname).lower()


def _outlines(el: Any) -> list[Any]:
    return [c for c in el if isinstance(c.tag, str) and _local(c) == "outline"]


def _clean(text: str) -> str:
    return " ".join(text.split())


def _feed_url(raw: str, source: str, line: int | None) -> str:
    url = raw.replace(" ", "%20")
    if url.lower().startswith("feed:"):  # feed://host/path, feed:https://host/path
        rest = url[5:]
        url = rest if rest.lower().startswith(("http://", "https://")) else f"http:{rest}"
    try:
        parts = urlsplit(url)
        ok = bool(parts.hostname) and parts.scheme.lower() in ("http", "https")
    except ValueError:
        ok = False
    if not ok or any(unicodedata.category(c) == "Cc" for c in url):
        raise OpmlError(source, line, f"xmlUrl {raw!r} is not an http(s) URL")
    return url


def _html_url(raw: str) -> str | None:
    url = raw.strip()
    return url if url.lower().startswith(("http://", "https://")) else None


def _url_key(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()).geturl()


def _category_tags(value: str) -> list[str]:
    """OPML 2.0 ``category="/News/World,tech"``: every path part is a tag."""
    tags = [_tag_slug(part) for item in value.split(",") for part in item.split("/")]
    return [t for t in tags if t]


def _tag_slug(text: str) -> str:
    slug = _NOT_TAG.sub("-", unicodedata.normalize("NFKC", text).casefold()).strip("-")
    return slug[:_NAME_MAX].rstrip("-")


def _name_slug(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower().translate(_FOLD))
    folded = decomposed.encode("ascii", "ignore").decode("ascii")
    if _NAME.fullmatch(folded):
        return folded  # already a valid name: kept, so exported names read back unchanged
    slug = _NOT_NAME.sub("-", folded).strip("-.")
    if len(slug) > _SLUG_MAX:
        cut = slug[:_SLUG_MAX]
        slug = cut[: cut.rindex("-")] if "-" in cut[_SLUG_MAX // 2 :] else cut
    return slug.rstrip("-.")


def _base_name(title: str, url: str) -> str:
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").removeprefix("www.")
        path = parts.path
    except ValueError:
        host, path = "", ""
    return _name_slug(title) or _name_slug(f"{host}{path}") or "feed"


def _unique(base: str, taken: Collection[str]) -> str:
    """``base``, or ``base-N`` for the lowest N >= 2 whose lower-case form is not taken."""
    if base.lower() not in taken:
        return base
    n = 2
    while True:
        suffix = f"-{n}"
        candidate = base[: _NAME_MAX - len(suffix)].rstrip("._-") + suffix
        if candidate.lower() not in taken:
            return candidate
        n += 1


def _xml_safe(text: str) -> str:
    return _NOT_XML.sub("", text)
