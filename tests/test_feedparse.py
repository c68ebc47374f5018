"""monitor.feedparse: feed documents (all written here) into plain-text entries."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.entries import ParsedFeed
from monitor.errors import FeedParseError
from monitor.feedparse import html_to_text, parse_feed, strip_declarations

FEED_URL = "http://feeds.example/world/rss.xml"


def parse(data: bytes | str, url: str = FEED_URL, content_type: str | None = None) -> ParsedFeed:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return parse_feed(raw, url, "test-feed", content_type)


def parse_error(data: bytes | str, content_type: str | None = None) -> FeedParseError:
    with pytest.raises(FeedParseError) as info:
        parse(data, content_type=content_type)
    assert info.value.url == FEED_URL
    return info.value


def rss_doc(items: str, *, prolog: str = '<?xml version="1.0" encoding="utf-8"?>') -> str:
    return (
        f'{prolog}<rss version="2.0"><channel><title>Coastal Wire</title>'
        f"<link>http://feeds.example/</link><language>en-gb</language>{items}</channel></rss>"
    )


def all_text(feed: ParsedFeed) -> str:
    return "\n".join(f"{e.title}\n{e.summary}\n{e.content}" for e in feed.entries)


# --------------------------------------------------------------- formats

RSS2 = rss_doc(
    "<item><title>Ferry &amp;amp; freight traffic resumes</title>"
    "<link>http://news.example/2025/ferry</link>"
    "<guid isPermaLink='false'>coastal-0001</guid>"
    "<pubDate>Tue, 04 Mar 2025 08:15:00 GMT</pubDate>"
    "<description>&lt;p&gt;The harbour reopened at dawn.&lt;/p&gt;"
    "&lt;p&gt;Crews worked &lt;b&gt;overnight&lt;/b&gt;.&lt;/p&gt;</description></item>"
    "<item><title>Storm warning lifted</title>"
    "<link>http://news.example/2025/storm?utm_source=rss#top</link>"
    "<description>Winds eased after midnight.</description></item>"
)


def test_rss2_entries_are_plain_text() -> None:
    feed = parse(RSS2)
    assert feed.title == "Coastal Wire"
    assert feed.lang == "en-gb"
    assert feed.warning is None
    first, second = feed.entries
    assert first.feed == "test-feed"
    assert first.title == "Ferry & freight traffic resumes"
    assert first.link == "http://news.example/2025/ferry"
    assert first.identity == "guid:coastal-0001"
    assert first.summary == "The harbour reopened at dawn.\n\nCrews worked overnight."
    assert first.published == datetime(2025, 3, 4, 8, 15, tzinfo=UTC)
    assert second.title == "Storm warning lifted"
    assert second.summary == "Winds eased after midnight."
    assert second.published is None
    # No guid: identity is the normalised link (tracking and fragment dropped).
    assert second.identity == "link:http://news.example/2025/storm"
    assert "<" not in all_text(feed)


ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="nb">
  <title>Fjordposten</title>
  <id>urn:uuid:5b1c0a44-feed</id>
  <updated>2025-03-01T10:00:00Z</updated>
  <entry>
    <title type="text">Why x &lt;y matters</title>
    <id>urn:uuid:5b1c0a44-0001</id>
    <link rel="alternate" href="/saker/bru-stengt"/>
    <updated>2025-03-01T09:30:00+01:00</updated>
    <summary type="html">&lt;p&gt;Brua er stengt.&lt;/p&gt;
      &lt;p&gt;Ferje &amp;amp; buss&lt;/p&gt;</summary>
    <content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">
      <p>Første <em>avsnitt</em></p><p>Andre avsnitt</p></div></content>
  </entry>
  <entry>
    <title type="html">Tog &amp;amp; trikk</title>
    <id>urn:uuid:5b1c0a44-0002</id>
    <link href="http://fjord.example/saker/tog"/>
    <published>2025-02-28T23:00:00Z</published>
    <summary>Plain summary &amp; more</summary>
  </entry>
</feed>
"""


def test_atom_entries() -> None:
    feed = parse(ATOM, url="http://fjord.example/feeds/atom.xml")
    assert feed.title == "Fjordposten"
    assert feed.lang == "nb"
    first, second = feed.entries
    # type="text": the "<" is a character of the title, not the start of a tag.
    assert first.title == "Why x <y matters"
    assert first.identity == "guid:urn:uuid:5b1c0a44-0001"
    assert first.link == "http://fjord.example/saker/bru-stengt"
    assert first.summary == "Brua er stengt.\n\nFerje & buss"
    assert first.content == "Første avsnitt\n\nAndre avsnitt"
    assert first.published == datetime(2025, 3, 1, 8, 30, tzinfo=UTC)
    assert second.title == "Tog & trikk"
    assert second.summary == "Plain summary & more"
    assert second.published == datetime(2025, 2, 28, 23, 0, tzinfo=UTC)


RDF = """<?xml version="1.0" encoding="utf-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
         xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel rdf:about="http://valley.example/">
    <title>Valley Bulletin</title>
    <link>http://valley.example/</link>
    <description>Local notes</description>
    <items><rdf:Seq>
      <rdf:li resource="http://valley.example/notes/1"/>
      <rdf:li resource="http://valley.example/notes/2"/>
    </rdf:Seq></items>
  </channel>
  <item rdf:about="http://valley.example/notes/1">
    <title>Mill reopens</title>
    <link>http://valley.example/notes/1</link>
    <description>The &lt;i&gt;old&lt;/i&gt; mill grinds again.</description>
    <dc:date>2024-12-24T18:00:00+01:00</dc:date>
  </item>
  <item rdf:about="http://valley.example/notes/2">
    <title>Bridge inspection</title>
    <link>http://valley.example/notes/2</link>
    <description>Inspectors found no cracks.</description>
  </item>
</rdf:RDF>
"""


def test_rss1_rdf_entries() -> None:
    feed = parse(RDF)
    assert feed.title == "Valley Bulletin"
    assert [e.title for e in feed.entries] == ["Mill reopens", "Bridge inspection"]
    mill = feed.entries[0]
    assert mill.link == "http://valley.example/notes/1"
    assert mill.summary == "The old mill grinds again."
    assert mill.published == datetime(2024, 12, 24, 17, 0, tzinfo=UTC)
    assert feed.entries[1].summary == "Inspectors found no cracks."


def test_relative_links_resolve_against_the_feed_url() -> None:
    doc = rss_doc(
        "<item><title>a</title><link>/top/one</link></item>"
        "<item><title>b</title><link>two.html</link></item>"
        "<item><title>c</title><link>../up/three</link></item>"
        "<item><title>d</title><link>//cdn.example/four</link></item>"
    )
    links = [e.link for e in parse(doc).entries]
    assert links == [
        "http://feeds.example/top/one",
        "http://feeds.example/world/two.html",
        "http://feeds.example/up/three",
        "http://cdn.example/four",
    ]


def test_relative_links_in_a_local_file_feed(tmp_path: Path) -> None:
    url = (tmp_path / "feeds" / "local.xml").as_uri()
    doc = rss_doc("<item><title>a</title><link>pages/a.html</link></item>")
    (entry,) = parse(doc, url=url).entries
    assert entry.link == (tmp_path / "feeds" / "pages" / "a.html").as_uri()


def test_a_broken_link_does_not_sink_the_feed() -> None:
    doc = rss_doc(
        "<item><title>bad port</title><link>http://news.example:eighty/x</link></item>"
        "<item><title>bad v6</title><link>http://[2001:db8::1/x</link></item>"
        "<item><title>fine</title><link>http://news.example/ok</link></item>"
    )
    feed = parse(doc)
    assert [e.title for e in feed.entries] == ["bad port", "bad v6", "fine"]
    assert feed.entries[0].link == "http://news.example:eighty/x"
    assert feed.entries[1].link == "http://[2001:db8::1/x"
    assert feed.entries[2].link == "http://news.example/ok"
    assert len({e.identity for e in feed.entries}) == 3


def test_parsed_feed_and_errors_pickle() -> None:
    """parse_feed runs in a worker process: what it returns or raises must pickle."""
    feed = parse(RSS2)
    assert pickle.loads(pickle.dumps(feed)) == feed
    err = parse_error(b"   ")
    back = pickle.loads(pickle.dumps(err))
    assert (back.kind, back.url, back.detail) == (err.kind, err.url, err.detail)


# ------------------------------------------------------------- encodings

TITLE_ZH = "港口重新开放"
TITLE_LATIN = "Café au lait à Ørsted"
TITLE_RU = "Порт снова открыт"
TITLE_1252 = "“Quoted” – naïve €5"
TITLE_NB = "Blåbærsyltetøy på brødskiva"


def enc_doc(title: str, encoding: str | None) -> str:
    prolog = f'<?xml version="1.0" encoding="{encoding}"?>' if encoding else '<?xml version="1.0"?>'
    return rss_doc(
        f"<item><title>{title}</title><link>http://news.example/1</link>"
        f"<description>{title[::-1]}</description></item>",
        prolog=prolog,
    )


@pytest.mark.parametrize(
    ("title", "codec", "declared", "content_type"),
    [
        (TITLE_ZH, "gb2312", "gb2312", None),
        (TITLE_ZH, "gb2312", None, "application/rss+xml; charset=gb2312"),
        (TITLE_ZH, "gb2312", "GB2312", "application/rss+xml; charset=GB2312"),
        (TITLE_LATIN, "iso-8859-1", "ISO-8859-1", None),
        (TITLE_LATIN, "iso-8859-1", None, "application/xml; charset=iso-8859-1"),
        (TITLE_RU, "windows-1251", "windows-1251", None),
        (TITLE_RU, "windows-1251", None, "application/xml; charset=windows-1251"),
        (TITLE_RU, "windows-1251", None, "text/xml; charset=windows-1251"),
        (TITLE_1252, "windows-1252", "windows-1252", None),
        (TITLE_1252, "windows-1252", None, "application/rss+xml; charset=windows-1252"),
        (TITLE_NB, "utf-8", "utf-8", None),
        (TITLE_NB, "utf-8", None, None),
        (TITLE_NB, "utf-8", None, "application/rss+xml; charset=utf-8"),
        (TITLE_NB, "utf-8-sig", "utf-8", None),
        (TITLE_NB, "utf-8-sig", None, None),
        (TITLE_ZH + TITLE_NB, "utf-16", "utf-16", None),
    ],
)
def test_encodings(title: str, codec: str, declared: str | None, content_type: str | None) -> None:
    data = enc_doc(title, declared).encode(codec)
    if codec == "utf-8-sig":
        assert data.startswith(b"\xef\xbb\xbf")
    (entry,) = parse(data, content_type=content_type).entries
    assert entry.title == title
    assert entry.summary == title[::-1]


def test_bytes_are_not_decoded_as_utf8_when_declared_otherwise() -> None:
    """Latin-1 bytes of 'Ørsted' are invalid UTF-8; the declaration must win."""
    data = enc_doc("Ørsted", "iso-8859-1").encode("iso-8859-1")
    assert b"\xd8rsted" in data
    (entry,) = parse(data).entries
    assert entry.title == "Ørsted"


# ---------------------------------------------------- entity attacks / XXE


def laughs(levels: int, fan_out: int) -> str:
    decls = ['<!ENTITY lol0 "ha">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * fan_out}">' for i in range(1, levels + 1)
    ]
    return f"<!DOCTYPE rss [{''.join(decls)}]>"


@pytest.mark.parametrize("codec", ["utf-8", "utf-16"])
@pytest.mark.timeout(30)
def test_billion_laughs_never_expands(codec: str) -> None:
    top = "&lol9;"
    doc = (
        f'<?xml version="1.0" encoding="{codec}"?>{laughs(9, 10)}'
        f'<rss version="2.0"><channel><title>t {top}</title>'
        f"<item><title>Start {top} end</title><link>http://news.example/1</link>"
        f"<description>{top}{top}</description></item></channel></rss>"
    )
    data = doc.encode(codec)
    feed = parse(data)
    text = all_text(feed) + feed.title
    assert "haha" not in text
    assert len(text) < 200
    assert feed.entries[0].title.startswith("Start")


@pytest.mark.timeout(30)
def test_quadratic_blowup_never_expands() -> None:
    big = "Q" * 20_000
    refs = "&big;" * 16_000  # ~100 KB document; expanded it would be 320 MB
    doc = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY big "{big}">]>'
        f'<rss version="2.0"><channel><title>t</title><item><title>x</title>'
        f"<link>http://news.example/1</link><description>{refs}</description></item>"
        f"</channel></rss>"
    )
    assert 90_000 < len(doc) < 130_000
    feed = parse(doc)
    text = all_text(feed)
    assert "Q" * 100 not in text
    assert len(text) <= len(doc)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "doc",
    [
        b"<!DOCTYPE rss " + b"[]" * 40_000,  # exponential backtracking in the old pattern
        b"<!DOCTYPE rss " * 8_000,  # quadratic rescanning
        b"<!ENTITY" * 12_000,
        b'<!DOCTYPE rss ["' + b'q"' * 40_000,
        b"<!--n-->" * 12_000 + b"<nothing/>",
    ],
)
def test_pathological_declarations_are_stripped_in_linear_time(doc: bytes) -> None:
    """Each of these took minutes to hours; the timeout marker is the guard."""
    assert b"<!ENTITY" not in strip_declarations(doc)
    with pytest.raises(FeedParseError) as info:
        parse(doc)
    assert info.value.kind in {"parse_error", "not_a_feed"}


def test_strip_declarations_handles_brackets_in_entity_values() -> None:
    doc = (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "]>"><!ENTITY b \'[x]\'>'
        b"<!-- note -->]><rss>&a;&b;</rss>"
    )
    assert strip_declarations(doc) == b'<?xml version="1.0"?><rss>&a;&b;</rss>'
    assert strip_declarations(b'<!DOCTYPE rss SYSTEM "x.dtd"><rss/>') == b"<rss/>"


def external_entity_docs(target: str) -> list[str]:
    item = (
        '<rss version="2.0"><channel><title>t</title><item><title>A {ref} B</title>'
        "<link>http://news.example/1</link><description>{ref}</description></item>"
        "</channel></rss>"
    )
    return [
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY leak SYSTEM "{target}">]>'
        + item.format(ref="&leak;"),
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY % leak SYSTEM "{target}"> %leak;]>'
        + item.format(ref=""),
        f'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "{target}">' + item.format(ref=""),
        f'<?xml version="1.0" encoding="utf-16"?><!DOCTYPE rss [<!ENTITY leak SYSTEM '
        f'"{target}">]>' + item.format(ref="&leak;"),
    ]


def test_external_entities_are_never_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-MARKER-5521 must never appear\n", encoding="utf-8")
    for target in (secret.as_uri(), "file:///etc/passwd"):
        for doc in external_entity_docs(target):
            codec = "utf-16" if 'encoding="utf-16"' in doc else "utf-8"
            feed = parse(doc.encode(codec))
            text = all_text(feed) + feed.title
            assert feed.entries[0].title.startswith("A")
            assert "SECRET-MARKER" not in text
            assert "root:" not in text
            assert "/bin/" not in text


# ------------------------------------------------------- not a feed / bozo


@pytest.mark.parametrize(
    "page",
    [
        b"<!DOCTYPE html><html><head><title>Home</title></head><body><p>Hi</p></body></html>",
        b"\n\n<!doctype html>\n<html lang='en'><body><a href='/rss'>RSS</a></body></html>",
        b"<!-- served by a CMS --><!-- cache: hit -->\n<!DOCTYPE html><html><body/></html>",
        b"\xef\xbb\xbf<!DOCTYPE html><html><head><meta charset='utf-8'></head><body/></html>",
        b'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0'
        b' Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n'
        b'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>x</title></head>'
        b"<body><p>x</p></body></html>",
        b"<HTML><BODY>Moved</BODY></HTML>",
    ],
)
def test_html_page_is_not_a_feed(page: bytes) -> None:
    err = parse_error(page, content_type="text/html; charset=utf-8")
    assert err.kind == "not_a_feed"
    assert "HTML" in err.detail


@pytest.mark.parametrize("body", [b"", b"   \n\t  ", b"\r\n"])
def test_empty_body_is_not_a_feed(body: bytes) -> None:
    err = parse_error(body)
    assert err.kind == "not_a_feed"
    assert "empty" in err.detail


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x01\x02\xff\xfe garbage }{",
        b"just some words, no markup at all",
        b'{"items": [{"title": "json, not xml"}]}',
        b"<note><to>nobody</to></note>",
        bytes(range(256)) * 4,
    ],
)
def test_garbage_is_rejected(body: bytes) -> None:
    err = parse_error(body)
    assert err.kind in {"parse_error", "not_a_feed"}


def test_malformed_but_usable_feed_yields_entries_and_a_warning() -> None:
    doc = rss_doc(
        "<item><title>Salt & pepper shortage</title><link>http://news.example/s</link>"
        "<description>Shops & markets report gaps</description></item>"
        "<item><title>Second story</title><link>http://news.example/t</link></item>"
    )
    feed = parse(doc)
    assert [e.title for e in feed.entries] == ["Salt & pepper shortage", "Second story"]
    assert feed.entries[0].summary == "Shops & markets report gaps"
    assert feed.warning is not None
    assert feed.warning  # names the parser complaint


def test_truncated_feed_keeps_the_complete_entries() -> None:
    doc = rss_doc(
        "<item><title>Whole</title><link>http://news.example/w</link></item>"
        "<item><title>Cut off mid-sentence</title><link>http://news.example/c</link></item>"
    )
    feed = parse(doc[: doc.index("mid-sentence")])
    assert len(feed.entries) >= 1
    assert feed.entries[0].title == "Whole"
    assert feed.warning is not None


# ------------------------------------------------------------ html_to_text


def test_html_to_text_keeps_paragraph_breaks_and_drops_tags() -> None:
    html = (
        "<p>First <b>bold</b> and <a href='http://x.example/'>linked</a> words.</p>"
        "<p>Second\n   paragraph.</p><ul><li>one</li><li>two</li></ul>"
        "<blockquote>quoted</blockquote>tail<br>after break"
    )
    text = html_to_text(html)
    assert text == (
        "First bold and linked words.\n\nSecond\n paragraph.\n\none\n\ntwo\n\nquoted\n\n"
        "tail\n\nafter break"
    )
    assert "<" not in text
    assert "href" not in text


def test_html_to_text_decodes_entities_with_or_without_tags() -> None:
    assert html_to_text("Fish &amp; chips &quot;today&quot; &#8212; 5&nbsp;kr") == (
        'Fish & chips "today" \u2014 5\u00a0kr'
    )
    assert html_to_text("<i>Fish</i> &amp; chips") == "Fish & chips"


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ("", ""),
        ("   plain words  ", "plain words"),
        ("a < b and c > d", "a < b and c > d"),
        ("I <3 fjords", "I <3 fjords"),
        ("<div><h2>Head</h2>body</div>", "Head\n\nbody"),
        ("<p></p><p></p><p>only</p>", "only"),
        ("<table><tr><td>a</td></tr><tr><td>b</td></tr></table>", "a\n\nb"),
    ],
)
def test_html_to_text_cases(fragment: str, expected: str) -> None:
    assert html_to_text(fragment) == expected


def test_scripts_are_sanitised_out_of_feed_html() -> None:
    doc = rss_doc(
        "<item><title>t</title><link>http://news.example/x</link>"
        "<description>&lt;p&gt;Safe text&lt;/p&gt;&lt;script&gt;steal()&lt;/script&gt;"
        "&lt;style&gt;p{color:red}&lt;/style&gt;</description></item>"
    )
    (entry,) = parse(doc).entries
    assert entry.summary == "Safe text"
