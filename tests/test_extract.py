"""extract_page and choose_body on the failure modes of article extraction.

The pages under tests/fixtures/pages/ are written for these tests (no text
taken from the benchmark corpora).
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest

from monitor.bodychoice import (
    BOT_CHECK,
    COMMENTS,
    CONSENT_WALL,
    JS_REQUIRED,
    NAVIGATION,
    PAYWALL,
    TRUNCATED,
    BodyChoice,
    PageText,
    choose_text,
)
from monitor.extract import choose_body, extract_page
from monitor.pagemeta import decode_html, load_json_ld, norm_date, norm_lang, parse_html
from monitor.workers import TaskTimeout, WorkerPool

PAGES = Path(__file__).resolve().parent / "fixtures" / "pages"
URL = "https://harbour.example/news/2024/story"
MAX = 3_000_000

FERRY_CONTENT = (
    "<p>The island ferry will leave ten minutes later on weekdays from Monday, the operator "
    "said, because the new berth at the north pier needs a longer approach.</p>"
    "<p>Passengers who connect to the 7:40 bus will have to take the later service; the "
    "council is asking the bus company to move its departure as well.</p>"
    "<p>Saturday and Sunday crossings keep their current times.</p>"
)


def page(name: str, url: str | None = URL, max_bytes: int = MAX) -> PageText:
    return extract_page((PAGES / name).read_bytes(), url, max_bytes)


def hang(seconds: float) -> str:
    """A task that is stuck (module level, so a spawned worker can import it)."""
    time.sleep(seconds)
    return "finished"


# --- failure modes -----------------------------------------------------------------


def test_consent_wall_is_flagged_and_the_feed_text_is_used() -> None:
    p = page("consent_wall.html")
    assert CONSENT_WALL in p.flags
    assert p.lang == "en"
    choice = choose_body(p, "Ferry timetable changes", "", FERRY_CONTENT)
    assert choice.source == "feed"
    assert choice.note == "page is a cookie/consent wall"
    assert choice.text.startswith("The island ferry will leave ten minutes later")
    assert "<p>" not in choice.text  # the feed's HTML becomes plain text


def test_consent_wall_with_no_feed_text_still_does_not_use_the_wall() -> None:
    choice = choose_body(page("consent_wall.html"), "Ferry timetable changes", "", "")
    assert choice == BodyChoice("", "feed", "page is a cookie/consent wall")


def test_consent_wall_over_a_json_ld_article_uses_the_article() -> None:
    wall = (PAGES / "consent_wall.html").read_text(encoding="utf-8")
    article = (PAGES / "jsonld_only.html").read_text(encoding="utf-8")
    script = article[article.index("<script") : article.index("</script>") + 9]
    p = extract_page(wall.replace("</head>", script + "</head>").encode(), URL, MAX)
    assert p.body_from == "json-ld"
    assert p.flags == ()
    assert p.text.startswith("The harbour authority finished replacing the old tide gauge")
    choice = choose_body(p, "Tide gauge upgrade finished early", "", "")
    assert choice.source == "page"


def test_json_ld_article_body_is_the_text_when_the_html_has_none() -> None:
    p = page("jsonld_only.html")
    assert p.body_from == "json-ld"
    assert p.text.startswith("The harbour authority finished replacing the old tide gauge")
    assert "second gauge on the outer breakwater next year." in p.text
    assert p.text.count("\n") == 3  # its four paragraphs are kept
    assert "Loading" not in p.text and "Sport" not in p.text
    assert p.title == "Tide gauge upgrade finished early"
    assert p.date == "2024-03-07"
    assert p.lang == "en"  # og:locale en_GB
    assert p.canonical_url == "https://harbour.example/news/tide-gauge-upgrade"
    assert p.site_name == "Harbour Gazette"
    assert p.flags == ()
    choice = choose_body(p, "Tide gauge upgrade finished early", "Gauge replaced.", "")
    assert choice == BodyChoice(p.text, "page", None)


def test_paywall_teaser_loses_to_the_longer_feed_text() -> None:
    p = page("paywall.html")
    assert PAYWALL in p.flags
    assert p.lang == "de"
    assert p.date == "2024-05-14"
    assert p.text.startswith("Die Reederei hat am Dienstag den Vertrag")
    assert "weiterlesen" not in p.text  # the subscription prompt is not article text
    summary = (
        "Die Reederei hat den Vertrag für eine neue Fähre unterschrieben. Das Schiff soll ab "
        "dem kommenden Sommer zwischen dem Festland und der Insel pendeln, doppelt so viele "
        "Autos tragen wie die alte Fähre und deutlich weniger Treibstoff verbrauchen. Die "
        "Inselbewohner hatten sich lange über Warteschlangen am Anleger beklagt."
    )
    choice = choose_body(p, "Neue Fähre für die Insellinie", summary, "")
    assert choice.source == "feed"
    assert choice.text == summary
    assert choice.note is not None and choice.note.startswith("page shows a paywall teaser")


def test_paywall_teaser_is_kept_when_the_feed_has_less() -> None:
    p = page("paywall.html")
    choice = choose_body(p, "Neue Fähre für die Insellinie", "Neue Fähre.", "")
    assert choice == BodyChoice(p.text, "page", None)


def test_comment_thread_dominating_the_page_is_not_the_article() -> None:
    p = page("comment_thread.html")
    assert COMMENTS in p.flags
    assert p.date == "2024-02-02"
    choice = choose_body(p, "Ferry timetable changes from Monday", "", FERRY_CONTENT)
    assert choice.source == "feed"
    assert choice.note == "page text is a comment thread, not the article"
    assert "connecting bus every single morning" not in choice.text


def test_navigation_only_page_is_not_the_article() -> None:
    p = page("navigation_only.html")
    assert NAVIGATION in p.flags
    choice = choose_body(p, "Ferry timetable changes", "The ferry leaves later.", "")
    assert choice == BodyChoice(
        "The ferry leaves later.", "feed", "page text is navigation, not an article"
    )


def test_enable_javascript_page_is_not_the_article() -> None:
    p = page("enable_javascript.html")
    assert JS_REQUIRED in p.flags
    assert BOT_CHECK not in p.flags
    choice = choose_body(p, "Ferry timetable changes", "", FERRY_CONTENT)
    assert choice.source == "feed"
    assert choice.note == "page only asks to enable JavaScript"


def test_windows_1251_declared_only_in_meta() -> None:
    raw = (PAGES / "windows1251_ru.html").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    p = extract_page(raw, URL, MAX)
    assert p.encoding == "cp1251"
    assert p.title == "Новый паром для островной линии"
    assert p.text.startswith("Судоходная компания во вторник подписала договор")
    assert "первые рейсы запланированы на июнь" in p.text
    assert p.lang == "ru"  # no markup: detected on the body
    assert p.date == "2024-06-11"
    choice = choose_body(p, "Новый паром для островной линии", "Паром.", "")
    assert choice.source == "page"


def test_shift_jis_declared_only_in_meta() -> None:
    raw = (PAGES / "shift_jis_ja.html").read_bytes()
    p = extract_page(raw, URL, MAX)
    assert p.encoding == "cp932"
    assert p.title == "島の路線に新しいフェリー"
    assert p.text.startswith("海運会社は火曜日、本土と島を結ぶ新しいフェリーの建造契約に署名した。")
    assert p.lang == "ja"
    choice = choose_body(p, "島の路線に新しいフェリー", "", "")
    assert choice == BodyChoice(p.text, "page", None)


def test_cut_in_the_middle_of_a_utf8_character_is_still_utf8() -> None:
    raw = "<html><body><p>Überfahrt nach Föhr</p></body></html>".encode()
    cut = raw[: raw.index("Ü".encode()) + 1]  # half of the two-byte Ü
    text, encoding = decode_html(cut)
    assert encoding == "utf-8"
    assert "\ufffd" not in text and "Ã" not in text


def test_utf8_page_with_a_stray_byte_is_still_utf8() -> None:
    good = "<html><body><p>Fähre nach Föhr, Überfahrt für zwölf Euro</p></body></html>"
    raw = good.encode().replace(b"zw\xc3\xb6lf", b"zw\xf6lf")  # one Latin-1 byte
    text, encoding = decode_html(raw)
    assert encoding == "utf-8"
    assert "Fähre nach Föhr, Überfahrt" in text


def test_huge_page_beyond_max_html_bytes_returns_quickly_and_sanely() -> None:
    article = (
        "<html><head><title>Pier repairs</title></head><body><article><h1>Pier repairs</h1>"
        + "<p>Divers started repairing the old pier on Monday and expect to finish in May.</p>" * 20
        + "</article><div class='more'>"
    )
    filler = "<div><a href='/x'>Another headline about the harbour</a></div>\n" * 200_000
    html = (article + filler + "</div></body></html>").encode()
    assert len(html) > 10_000_000
    start = time.perf_counter()
    p = extract_page(html, URL, 200_000)
    elapsed = time.perf_counter() - start
    assert elapsed < 10
    assert p.title == "Pier repairs"
    assert p.text.startswith("Divers started repairing the old pier on Monday")
    assert "Another headline" not in p.text
    pickle.loads(pickle.dumps(p))


def test_empty_and_garbage_input() -> None:
    assert extract_page(b"", URL, MAX).text == ""
    assert extract_page(b"\x00\x01\x02", None, MAX).text == ""
    junk = extract_page(bytes(range(256)) * 50, None, MAX)  # not HTML: no crash
    assert isinstance(junk, PageText)
    choice = choose_body(extract_page(b"", URL, MAX), "Ferry", "A summary.", "")
    assert choice == BodyChoice("A summary.", "feed", "page had no article text")


# --- choose_body on its own ------------------------------------------------------------


def body(text: str, flags: tuple[str, ...] = (), title: str = "Ferry timetable") -> PageText:
    return PageText(title, text, "en", None, flags=flags)


LONG_PAGE = ("The island ferry will leave ten minutes later on weekdays from Monday. " * 10).strip()


def test_choose_body_prefers_a_good_page() -> None:
    assert choose_body(body(LONG_PAGE), "Ferry timetable", "Short.", "") == BodyChoice(
        LONG_PAGE, "page", None
    )


def test_choose_body_short_page_and_longer_feed() -> None:
    choice = choose_body(body("Ferry later."), "Ferry timetable", "", FERRY_CONTENT)
    assert choice.source == "feed"
    assert choice.note == "page text too short (12 chars)"


def test_choose_body_truncated_page_and_longer_feed() -> None:
    page_text = "The island ferry will leave ten minutes later on weekdays from Monday, the…"
    choice = choose_body(body(page_text, (TRUNCATED,)), "Ferry timetable", "", FERRY_CONTENT)
    assert choice.source == "feed"
    assert choice.note is not None and choice.note.startswith("page text is truncated")


def test_choose_body_feed_content_much_longer_than_page() -> None:
    page_text = "The island ferry will leave ten minutes later on weekdays from Monday. " * 4
    content = FERRY_CONTENT * 4
    choice = choose_body(body(page_text), "Ferry timetable changes", "", content)
    assert choice.source == "feed"
    assert choice.note is not None and "much longer" in choice.note


def test_choose_body_page_about_something_else() -> None:
    home = body("Welcome to the Harbour Gazette. " * 20, title="Harbour Gazette")
    choice = choose_body(home, "Island ferry timetable changes", "", FERRY_CONTENT)
    assert choice.source == "feed"
    assert choice.note == "page text is unrelated to the entry title"


# --- metadata helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-07T06:30:00+00:00", "2024-03-07"),
        ("20240611", "2024-06-11"),
        ("Thu, 07 Mar 2024 06:30:00 GMT", "2024-03-07"),
        ("2024/3/7", "2024-03-07"),
        ("yesterday", None),
        ("2024-02-30", None),
    ],
)
def test_norm_date(value: str, expected: str | None) -> None:
    assert norm_date(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("en-US", "en"), ("de_DE", "de"), ("zh-Hans-CN", "zh"), ("x-default", None), ("", None)],
)
def test_norm_lang(value: str, expected: str | None) -> None:
    assert norm_lang(value) == expected


def test_json_ld_tolerates_wrappers_and_concatenation() -> None:
    text = '<!-- {"@type": "NewsArticle", "headline": "A"} {"@type": "Person"}; -->'
    assert load_json_ld(text) == [{"@type": "NewsArticle", "headline": "A"}, {"@type": "Person"}]
    assert load_json_ld("{not json") == []


# --- in the worker pool -------------------------------------------------------------------


async def test_worker_pool_kills_a_stuck_task_and_keeps_working() -> None:
    pool = WorkerPool(1, max_tasks=10)
    try:
        start = time.perf_counter()
        with pytest.raises(TaskTimeout):
            await pool.run(hang, 60.0, timeout_s=1.0)
        assert time.perf_counter() - start < 30
        raw = (PAGES / "windows1251_ru.html").read_bytes()
        result: PageText = await pool.run(extract_page, raw, URL, MAX, timeout_s=30)
        assert result.text.startswith("Судоходная компания")
        assert await pool.run(hang, 0.0, timeout_s=30) == "finished"
    finally:
        pool.close()


def test_the_date_search_can_be_skipped_but_the_metadata_date_is_kept() -> None:
    body = "".join(
        f"<p>Paragraph {i} of a story about the harbour's new tide gauge and its first "
        "readings, long enough to be taken for the article body.</p>"
        for i in range(8)
    )
    bare = f"<html><body><article><h1>Tide gauge</h1>{body}</article></body></html>".encode()
    url = "https://harbour.example/2024/03/12/tide-gauge.html"
    assert extract_page(bare, url, 100_000).date == "2024-03-12"  # htmldate, from the URL
    assert extract_page(bare, url, 100_000, False).date is None  # not searched
    meta = bare.replace(
        b"<html>",
        b'<html><head><meta property="article:published_time" content="2024-03-07"></head>',
    )
    assert extract_page(meta, url, 100_000, False).date == "2024-03-07"


def test_every_parsed_element_is_an_html_element_trafilatura_accepts() -> None:
    import lxml.html

    tree = parse_html(
        "<html><body><form><input name=q><select><option>a</option></select>"
        "<textarea>t</textarea><label>l</label></form><p>Text &amp; more</p></body></html>"
    )
    assert tree is not None
    elements = [e for e in tree.iter() if isinstance(e.tag, str)]
    assert len(elements) == 9
    assert all(isinstance(e, lxml.html.HtmlElement) for e in elements)
    assert tree.text_content().endswith("Text & more")


def test_choose_text_takes_the_feed_text_as_plain_text() -> None:
    # The pipeline's entries are plain text already (monitor.feedparse): a
    # literal "<" in a text/plain summary must not be read as markup.
    fallback = "Fares: children < 12 travel free on the <new> island ferry."
    choice = choose_text(body("Ferry later."), "Ferry timetable", fallback)
    assert choice == BodyChoice(fallback, "feed", "page text too short (12 chars)")
    # choose_body, for feed fields that may be HTML, turns them into text first.
    html = choose_body(body("Ferry later."), "Ferry timetable", "", FERRY_CONTENT)
    assert html.source == "feed" and "<p>" not in html.text
