"""monitor.opml: OPML documents (all written here) into feeds, and back out."""

from __future__ import annotations

import pickle
import re
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config import Config, FeedSpec
from monitor.errors import MonitorError
from monitor.opml import OpmlError, OpmlFeed, feeds_yaml, parse_opml, to_opml, unique_name
from monitor.yamlsource import parse_yaml

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def summary(feeds: list[OpmlFeed]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [(f.name, f.url, f.title, f.tags) for f in feeds]


def opml_error(data: bytes) -> OpmlError:
    with pytest.raises(OpmlError) as info:
        parse_opml(data, "subs.opml")
    assert info.value.source == "subs.opml"
    return info.value


# ------------------------------------------------------------ tool styles

FLAT = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>Subscriptions</title><dateCreated>Tue, 04 Mar 2025 08:15:00 GMT</dateCreated></head>
  <body>
    <outline text="BBC News - World" title="BBC News - World" type="rss"
             xmlUrl="https://feeds.bbci.co.uk/news/world/rss.xml"
             htmlUrl="https://www.bbc.co.uk/news/world"/>
    <outline text="NRK Urix" type="rss" xmlUrl="https://www.nrk.no/urix/toppsaker.rss"/>
    <outline text="S\xc3\xbcddeutsche Zeitung" xmlUrl="https://rss.example.de/rss/Topthemen"/>
    <outline text="\xe6\x96\xb0\xe5\x8d\x8e\xe7\xbd\x91"
             xmlUrl="http://www.xinhuanet.example/politics/news_politics.xml"/>
    <outline text="" title="Blank text, title used" xmlUrl="https://blank.example/feed"/>
    <outline text="A link, not a feed" type="link" url="https://example.com/page"/>
  </body>
</opml>
"""


def test_flat_export() -> None:
    feeds = parse_opml(FLAT, "flat.opml")
    assert summary(feeds) == [
        (
            "bbc-news-world",
            "https://feeds.bbci.co.uk/news/world/rss.xml",
            "BBC News - World",
            (),
        ),
        ("nrk-urix", "https://www.nrk.no/urix/toppsaker.rss", "NRK Urix", ()),
        (
            "suddeutsche-zeitung",
            "https://rss.example.de/rss/Topthemen",
            "Süddeutsche Zeitung",
            (),
        ),
        (
            # No ASCII in the title: the name comes from host and path.
            "xinhuanet.example-politics-news-politics.xml",
            "http://www.xinhuanet.example/politics/news_politics.xml",
            "新华网",
            (),
        ),
        ("blank-text-title-used", "https://blank.example/feed", "Blank text, title used", ()),
    ]
    assert feeds[0].html_url == "https://www.bbc.co.uk/news/world"
    assert feeds[1].html_url is None


NESTED = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="1.1">
  <head><title>Feedly export</title></head>
  <body>
    <outline text="News" title="News">
      <outline text="World  Affairs">
        <outline type="rss" text="Reuters World" title="Reuters World"
                 xmlUrl="https://example.com/reuters/world.xml"/>
      </outline>
      <outline type="rss" text="Defense News" xmlurl="https://example.com/defense.rss"/>
    </outline>
    <outline text="Tech &amp; Science">
      <outline text="LWN" XMLURL="https://lwn.example/headlines/rss" category="/Linux/Kernel,dev"/>
    </outline>
    <outline text="Empty folder"/>
    <outline title="\xc3\x98konomi"><outline text="E24" xmlUrl="https://e24.example/rss"/></outline>
  </body>
</opml>
"""


def test_nested_folders_become_tags() -> None:
    feeds = parse_opml(NESTED, "feedly.opml")
    assert summary(feeds) == [
        (
            "reuters-world",
            "https://example.com/reuters/world.xml",
            "Reuters World",
            ("news", "world-affairs"),
        ),
        ("defense-news", "https://example.com/defense.rss", "Defense News", ("news",)),
        (
            "lwn",
            "https://lwn.example/headlines/rss",
            "LWN",
            ("tech-science", "linux", "kernel", "dev"),
        ),
        ("e24", "https://e24.example/rss", "E24", ("økonomi",)),
    ]


OPML_1_0 = b"""<?xml version="1.0"?>
<!-- exported by an old reader -->
<opml version="1.0">
<head><title>mySubscriptions</title></head>
<body>
<outline text="Scripting News" type="rss" xmlUrl="http://scripting.example/rss.xml"/>
<outline text="Old style" xmlUrl="feed://old.example/feed"/>
<outline text="Older style" xmlUrl="feed:https://older.example/feed"/>
<outline text="Folder"><outline text="Inner" xmlUrl="  http://inner.example/rss  "/></outline>
</body>
</opml>
"""


def test_opml_1_0_text_only_and_feed_scheme() -> None:
    feeds = parse_opml(OPML_1_0, "old.opml")
    assert summary(feeds) == [
        ("scripting-news", "http://scripting.example/rss.xml", "Scripting News", ()),
        ("old-style", "http://old.example/feed", "Old style", ()),
        ("older-style", "https://older.example/feed", "Older style", ()),
        ("inner", "http://inner.example/rss", "Inner", ("folder",)),
    ]


DUPLICATES = b"""<opml version="2.0"><body>
  <outline text="World"><outline text="Wire" xmlUrl="https://wire.example/rss"/></outline>
  <outline text="Europe">
    <outline text="Wire again" xmlUrl="https://WIRE.example/rss" htmlUrl="https://wire.example/"/>
    <outline text="News" xmlUrl="https://a.example/news"/>
  </outline>
  <outline text="News" xmlUrl="https://b.example/news"/>
  <outline text="news" xmlUrl="https://c.example/news"/>
  <outline text="Wire" xmlUrl="https://wire.example/rss" category="World,breaking"/>
</body></opml>"""


def test_duplicate_urls_are_merged_and_names_made_unique() -> None:
    feeds = parse_opml(DUPLICATES, "dups.opml")
    assert summary(feeds) == [
        ("wire", "https://wire.example/rss", "Wire", ("world", "europe", "breaking")),
        ("news", "https://a.example/news", "News", ("europe",)),
        ("news-2", "https://b.example/news", "News", ()),
        ("news-3", "https://c.example/news", "news", ()),
    ]
    assert feeds[0].html_url == "https://wire.example/"


def test_names_avoid_existing_names_in_any_case() -> None:
    feeds = parse_opml(DUPLICATES, "dups.opml", existing_names={"Wire", "news", "NEWS-3"})
    assert [f.name for f in feeds] == ["wire-2", "news-2", "news-4", "news-5"]


WINDOWS_1252 = (
    '<?xml version="1.0" encoding="windows-1252"?>\n'
    '<opml version="2.0"><body><outline text="Fran\u00e7ais">\n'
    '<outline text="Caf\u00e9 Cr\u00e8me" xmlUrl="https://cafe.example/rss"/>\n'
    '<outline text="Le Monde \u2013 International" xmlUrl="https://lemonde.example/rss"/>\n'
    '<outline text="\u20acuro News \u00bb" xmlUrl="https://euro.example/rss"/>\n'
    "</outline></body></opml>\n"
).encode("cp1252")


def test_windows_1252_declared_in_the_prolog() -> None:
    assert b"Caf\xe9" in WINDOWS_1252
    feeds = parse_opml(WINDOWS_1252, "fr.opml")
    assert summary(feeds) == [
        ("cafe-creme", "https://cafe.example/rss", "Café Crème", ("français",)),
        (
            "le-monde-international",
            "https://lemonde.example/rss",
            "Le Monde – International",
            ("français",),
        ),
        ("uro-news", "https://euro.example/rss", "€uro News »", ("français",)),
    ]


def test_windows_1252_without_declaration_is_repaired() -> None:
    undeclared = WINDOWS_1252.replace(b' encoding="windows-1252"', b"")
    assert parse_opml(undeclared, "fr.opml") == parse_opml(WINDOWS_1252, "fr.opml")


def test_bom_and_utf16() -> None:
    text = (
        '<?xml version="1.0" encoding="UTF-8"?><opml version="2.0"><body>'
        '<outline text="Zürich Today" xmlUrl="https://zh.example/rss"/></body></opml>'
    )
    expected = [("zurich-today", "https://zh.example/rss", "Zürich Today", ())]
    assert summary(parse_opml(b"\xef\xbb\xbf" + text.encode(), "bom.opml")) == expected
    utf16 = text.replace("UTF-8", "UTF-16").encode("utf-16")  # with its BOM
    assert summary(parse_opml(utf16, "utf16.opml")) == expected


def test_entities_character_references_and_html_names() -> None:
    data = b"""<opml version="2.0"><body>
      <outline text="Caf&#233; &amp; Bar&nbsp;News &eacute;&lt;3"
               xmlUrl="https://bar.example/rss?a=1&amp;b=2"/>
    </body></opml>"""
    feeds = parse_opml(data, "ents.opml")
    assert summary(feeds) == [
        ("cafe-bar-news-e-3", "https://bar.example/rss?a=1&b=2", "Café & Bar News é<3", ())
    ]


def test_empty_body() -> None:
    assert parse_opml(b'<opml version="2.0"><head/><body/></opml>', "empty.opml") == []


# ----------------------------------------------------------- hostile input

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE opml [
<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
<!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
<!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
<!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">
]>
<opml version="2.0"><head><title>&h;</title></head><body>
<outline text="%s" xmlUrl="https://bomb.example/rss"/>
</body></opml>"""


@pytest.mark.parametrize("in_attribute", [True, False])
def test_entity_bomb_is_refused_without_expanding(in_attribute: bool) -> None:
    data = BOMB.replace(b"%s", b"&h;" if in_attribute else b"plain")
    start = time.monotonic()
    err = opml_error(data)
    assert time.monotonic() - start < 1.0
    assert len(str(err)) < 500


def test_external_entities_are_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    uri = secret.as_uri().encode()
    in_attribute = (
        b'<?xml version="1.0"?>\n<!DOCTYPE opml [<!ENTITY x SYSTEM "' + uri + b'">]>\n'
        b'<opml version="2.0"><body><outline text="&x;" xmlUrl="https://x.example/"/>'
        b"</body></opml>"
    )
    in_text = in_attribute.replace(b'text="&x;"', b'text="t"').replace(
        b"<body>", b"<head><title>&x;</title></head><body>"
    )
    parameter = (
        b'<?xml version="1.0"?>\n<!DOCTYPE opml [<!ENTITY % x SYSTEM "' + uri + b'"> %x;]>\n'
        b'<opml version="2.0"><body><outline text="t" xmlUrl="https://x.example/"/>'
        b"</body></opml>"
    )
    for data in (in_attribute, in_text, parameter):
        err = opml_error(data)
        assert "TOP-SECRET" not in str(err)


def test_external_dtd_is_not_loaded(tmp_path: Path) -> None:
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY marker "LOADED-FROM-DTD">')
    data = (
        b'<?xml version="1.0"?>\n<!DOCTYPE opml SYSTEM "' + dtd.as_uri().encode() + b'">\n'
        b'<opml version="2.0"><body><outline text="A &marker; B" xmlUrl="https://a.example/"/>'
        b"</body></opml>"
    )
    [feed] = parse_opml(data, "dtd.opml")
    assert "LOADED" not in feed.title


@pytest.mark.parametrize(
    ("data", "line", "reason"),
    [
        (b"", 1, "not well-formed XML"),
        (b"this is not xml", 1, "not well-formed XML"),
        (b"<opml>\n<body>\n<outline text='x'\n", 4, "not well-formed XML"),
        (b"<opml><body><outline text='&nosuchentity;'/></body></opml>", 1, "not well-formed"),
        (b"\xff\xfe\x00\x00garbage", 1, "not well-formed XML"),
        (b'<?xml version="1.0"?>\n<rss version="2.0"><channel/></rss>', 2, "root element is <rss>"),
        (b"<opml version='2.0'>\n<head/>\n</opml>", 1, "no <body> element"),
        (
            b"<opml><body>\n\n<outline text='x' xmlUrl='file:///etc/passwd'/></body></opml>",
            3,
            "is not an http(s) URL",
        ),
        (b"<opml><body><outline text='x' xmlUrl='/relative/rss'/></body></opml>", 1, "http(s)"),
        (b"<opml><body><outline text='x' xmlUrl='javascript:alert(1)'/></body></opml>", 1, "URL"),
        (b"<opml><body><outline text='x' xmlUrl='http://[::1/'/></body></opml>", 1, "URL"),
    ],
)
def test_invalid_documents(data: bytes, line: int | None, reason: str) -> None:
    err = opml_error(data)
    assert isinstance(err, MonitorError)
    assert err.line == line
    assert reason in err.reason
    assert str(err).startswith("subs.opml" if line is None else f"subs.opml:{line}: ")


def test_error_pickles() -> None:
    err = opml_error(b"<opml>")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.source, copy.line, copy.reason, str(copy)) == (
        err.source,
        err.line,
        err.reason,
        str(err),
    )


# ------------------------------------------------------------------ names


def test_name_from_title_else_host_and_path() -> None:
    assert unique_name("BBC News — World", "https://x.example/", ()) == "bbc-news-world"
    assert unique_name("Straße & Ærø Blog", "https://x.example/", ()) == "strasse-aero-blog"
    assert unique_name("already.valid_name", "https://x.example/", ()) == "already.valid_name"
    assert unique_name("...", "https://www.x.example/a/b.rss?q=1", ()) == "x.example-a-b.rss"
    assert unique_name("Новости", "http://[::1/", ()) == "feed"
    assert unique_name("News", "https://x.example/", ["news", "NEWS-2"]) == "news-3"
    long = unique_name("word " * 40, "https://x.example/", ())
    assert long == "-".join(["word"] * 12)
    assert unique_name("a" * 100, "https://x.example/", ["a" * 100]) == "a" * 98 + "-2"


titles = st.one_of(
    st.text(max_size=150),
    st.sampled_from(["News", "news", "", "...", "---", "a" * 100, "Ünïcödé", "新华网"]),
)
urls = st.sampled_from(
    ["https://x.example/", "https://www.x.example/rss.xml", "http://[::1/", "https://新.example/"]
)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(st.tuples(titles, urls), max_size=30),
    existing=st.lists(st.from_regex(NAME, fullmatch=True), max_size=10),
)
def test_names_are_always_valid_and_unique(
    items: list[tuple[str, str]], existing: list[str]
) -> None:
    taken = list(existing)
    for title, url in items:
        name = unique_name(title, url, taken)
        assert NAME.fullmatch(name)
        assert FeedSpec(name=name, url=url).name == name
        assert name.lower() not in {t.lower() for t in taken}
        taken.append(name)


@settings(max_examples=100, deadline=None)
@given(feeds=st.lists(st.tuples(titles, urls.filter(lambda u: "[" not in u)), max_size=20))
def test_parsed_names_are_valid_and_unique(feeds: list[tuple[str, str]]) -> None:
    doc = to_opml([(t, f"{u}?n={i}", ()) for i, (t, u) in enumerate(feeds)], "t")
    names = [f.name for f in parse_opml(doc, "gen.opml", existing_names={"news"})]
    assert len(names) == len(feeds)
    assert all(NAME.fullmatch(n) for n in names)
    assert len({n.lower() for n in names} | {"news"}) == len(names) + 1


# -------------------------------------------------------------- to_opml


def test_to_opml_round_trips() -> None:
    feeds: list[tuple[str, str, tuple[str, ...]]] = [
        ("bbc-world", "https://feeds.bbci.co.uk/news/world/rss.xml", ("en", "world")),
        ("query", 'https://q.example/rss?a=1&b=<2>&c="3"', ()),
        ("nrk", "https://www.nrk.no/urix/toppsaker.rss", ("nb", "world")),
        ("tass", "https://tass.example/rss/v2.xml", ("world",)),
        ("no", "https://no.example/rss", ("no", "on", "yes")),
        ("reuters", "https://reuters.example/world", ("en",)),
    ]
    doc = to_opml(feeds, 'My feeds & "more" <all>\x00')
    assert doc.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<opml version=\"2.0\">")
    assert b'<title>My feeds &amp; "more" &lt;all&gt;</title>' in doc
    parsed = parse_opml(doc, "export.opml")
    assert sorted((f.name, f.url, f.tags) for f in parsed) == sorted(feeds)
    # Each feed sits in the folder of its first tag: reuters joins bbc-world.
    assert [f.name for f in parsed] == ["bbc-world", "reuters", "query", "nrk", "tass", "no"]


def test_to_opml_slugs_tags_on_the_way_back() -> None:
    doc = to_opml([("a", "https://a.example/", ["World News", "EN"])], "t")
    assert [f.tags for f in parse_opml(doc, "t.opml")] == [("world-news", "en")]


def test_to_opml_empty() -> None:
    assert parse_opml(to_opml([], "nothing"), "t.opml") == []


# ------------------------------------------------------------- feeds_yaml


def test_feeds_yaml_is_readable_and_quotes_what_yaml_would_misread() -> None:
    feeds = [
        OpmlFeed("bbc-world", "https://feeds.bbci.co.uk/news/world/rss.xml", "BBC", ("en",), None),
        OpmlFeed("no", "https://no.example/rss?a=1&b=2#x", "no", ("no", "on", "yes", "1.0"), None),
        OpmlFeed("plain", "https://p.example/", "Multi\nline: title\u2028# x", (), None),
    ]
    text = feeds_yaml(feeds, 900.0)
    assert text == (
        "feeds:\n"
        "  # BBC\n"
        "  - name: bbc-world\n"
        "    url: https://feeds.bbci.co.uk/news/world/rss.xml\n"
        "    interval_s: 900\n"
        "    tags: [en]\n"
        "  - name: 'no'\n"
        "    url: https://no.example/rss?a=1&b=2#x\n"
        "    interval_s: 900\n"
        "    tags: ['no', 'on', 'yes', '1.0']\n"
        "  # Multi line: title # x\n"
        "  - name: plain\n"
        "    url: https://p.example/\n"
        "    interval_s: 900\n"
    )
    assert yaml.safe_load(text) == {
        "feeds": [
            {
                "name": "bbc-world",
                "url": "https://feeds.bbci.co.uk/news/world/rss.xml",
                "interval_s": 900,
                "tags": ["en"],
            },
            {
                "name": "no",
                "url": "https://no.example/rss?a=1&b=2#x",
                "interval_s": 900,
                "tags": ["no", "on", "yes", "1.0"],
            },
            {"name": "plain", "url": "https://p.example/", "interval_s": 900},
        ]
    }


def test_feeds_yaml_empty_and_fractional_interval() -> None:
    assert yaml.safe_load(feeds_yaml([], 60)) == {"feeds": []}
    one = [OpmlFeed("a", "https://a.example/", "", (), None)]
    assert yaml.safe_load(feeds_yaml(one, 90.5))["feeds"][0]["interval_s"] == 90.5
    with pytest.raises(ValueError, match="interval_s"):
        feeds_yaml(one, 0)


def test_imported_yaml_is_a_valid_config() -> None:
    feeds = parse_opml(NESTED, "feedly.opml") + parse_opml(WINDOWS_1252, "fr.opml")
    text = feeds_yaml(feeds, 1800)
    cfg = Config.model_validate(parse_yaml(text, "imported.yaml").data)
    assert [(f.name, f.url, f.interval_s, f.tags) for f in cfg.feeds] == [
        (f.name, f.url, 1800.0, f.tags) for f in feeds
    ]


yaml_words = st.sampled_from(
    ["no", "on", "off", "yes", "y", "n", "true", "null", "~", "1_000", "0o17", "0x1f", "1e3",
     ".inf", "-", "? x", "a: b", "#x", "[x]", "{x}", "'q'", '"q"', "*a", "&a", "!t", "%x", "@x",
     "`x`", "x #y", " lead", "trail ", "2025-03-04", "12:30:00", "<<", "=", ""]
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.from_regex(NAME, fullmatch=True) | yaml_words.filter(NAME.fullmatch),
            st.text(max_size=40),
            st.lists(yaml_words | st.text(max_size=20), max_size=5),
        ),
        max_size=8,
    )
)
def test_feeds_yaml_loads_back_exactly(rows: list[tuple[str, str, list[str]]]) -> None:
    feeds = [
        OpmlFeed(name, f"https://x.example/{i}?q=a: b #c", title, tuple(tags), None)
        for i, (name, title, tags) in enumerate(rows)
    ]
    loaded = yaml.safe_load(feeds_yaml(feeds, 300))
    assert loaded == {
        "feeds": [
            {
                "name": f.name,
                "url": f.url,
                "interval_s": 300,
                **({"tags": list(f.tags)} if f.tags else {}),
            }
            for f in feeds
        ]
    }
