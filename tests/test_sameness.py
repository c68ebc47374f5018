"""The pure half of "one story, one alert": sameness URLs, shingles, MinHash, verdicts."""

from __future__ import annotations

import pytest

from monitor.alerts import Alert, Sighting
from monitor.minhash import signature, tokens
from monitor.sameness import (
    BANDS,
    also_seen_alert,
    band_keys,
    containment,
    from_hex,
    same_story,
    sameness_url,
    similarity,
    story_urls,
    to_hex,
)
from monitor.subscribe import format_alert
from monitor.textsig import NUM_PERM, TextSignature

THRESHOLD, CONTAINED, SHINGLE, MIN_WORDS = 0.3, 0.7, 4, 15


def sig(text: str) -> TextSignature:
    s = signature(text, shingle_words=SHINGLE, min_words=MIN_WORDS)
    assert s is not None
    return s


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://news.example/a/1", "//news.example/a/1"),
        ("http://WWW.News.Example:80/a/1/", "//news.example/a/1"),
        ("https://news.example:443/a/1#comments", "//news.example/a/1"),
        ("https://news.example/a/1?utm_source=rss&utm_medium=feed", "//news.example/a/1"),
        ("https://news.example/a/1?fbclid=abc&gclid=x&mc_cid=1&ref=tw", "//news.example/a/1"),
        ("https://news.example/story?id=7&utm_campaign=x&b=2", "//news.example/story?b=2&id=7"),
        ("https://news.example/story?b=2&id=7", "//news.example/story?b=2&id=7"),
        ("https://news.example:8443/a", "//news.example:8443/a"),
        ("https://news.example/", None),  # a front page names no story
        ("https://news.example?utm_source=x", None),
        ("file:///tmp/a.html", None),
        ("", None),
        (None, None),
        ("not a url", None),
    ],
)
def test_sameness_url(url: str | None, expected: str | None) -> None:
    assert sameness_url(url) == expected


def test_story_urls_keeps_each_address_once() -> None:
    link = "https://news.example/a/1?utm_source=rss"
    assert story_urls(link, "https://www.news.example/a/1") == ("//news.example/a/1",)
    assert story_urls(link, "https://wire.example/b") == ("//news.example/a/1", "//wire.example/b")
    assert story_urls(None, "https://news.example/") == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Quick, brown FOX!", ["the", "quick", "brown", "fox"]),
        ("北京今日下雨", ["北", "京", "今", "日", "下", "雨"]),
        ("東京タワー", ["東", "京", "タ", "ワ", "ー"]),
        ("ฝนตกหนัก", ["ฝ", "น", "ต", "ก", "ห", "น", "ั", "ก"]),
        ("서울에 비가 온다", ["서울에", "비가", "온다"]),
        ("Ｇａｓ 2026", ["gas", "2026"]),  # full-width folded
        ("NATO和Россия", ["nato", "和", "россия"]),
    ],
)
def test_tokens(text: str, expected: list[str]) -> None:
    assert tokens(text) == expected


EN = (
    "The harbour authority in Tromsø said on Monday that a new ferry line to Svalbard will open "
    "next spring. Two ships will sail twice a week, and the crossing will take about thirty "
    "hours in good weather. Local fishermen welcomed the plan but asked for more berths in the "
    "old harbour, which is already full in the summer months."
)
EN_OTHER = (
    "The harbour authority in Bodø said on Monday that the old ferry line to Røst will close "
    "next spring. Fishermen said the closure would hurt the island, and the mayor asked the "
    "government for money to keep one ship sailing in the summer months, when most visitors come."
)
DE = (
    "Die Stadtverwaltung von Leipzig hat am Dienstag beschlossen, drei neue Straßenbahnlinien "
    "zu bauen. Die erste Linie soll im Jahr 2029 fertig sein und den Hauptbahnhof mit dem "
    "Flughafen verbinden. Die Kosten werden auf rund 400 Millionen Euro geschätzt."
)
ZH = (
    "北京市政府周二宣布，将在明年春天开通一条新的地铁线路，连接首都机场和市中心。"
    "新线路全长四十公里，设有十二个车站，预计每天可运送三十万名乘客。"
)
ZH_OTHER = (
    "上海市政府周二宣布，将在明年春天关闭一条旧的公交线路，连接浦东机场和市中心。"
    "市民对此表示不满，希望政府保留这条线路，并增加夜间班次。"
)
RU = (
    "Власти Новосибирска во вторник объявили о строительстве нового моста через Обь. Мост "
    "длиной полтора километра должен открыться через четыре года, а его стоимость оценивают "
    "в тридцать миллиардов рублей."
)
TH = "กรุงเทพมหานครประกาศเมื่อวันอังคารว่าจะเปิดเส้นทางรถไฟฟ้าสายใหม่ในฤดูใบไม้ผลิปีหน้า"
BOILER = "Share this story | Sign up for our newsletter | All rights reserved. "


@pytest.mark.parametrize("text", [EN, DE, ZH, RU, TH])
def test_a_republication_is_the_same_story(text: str) -> None:
    original = sig(text)
    headline = sig("Update: the whole story again\n\n" + text)
    trimmed = sig(text[: int(len(text) * 0.8)])
    wrapped = sig(BOILER + text + " " + BOILER)
    for copy in (headline, trimmed, wrapped):
        assert same_story(original, copy, THRESHOLD), similarity(original.values, copy.values)
        assert set(band_keys(original.values)) & set(band_keys(copy.values))  # LSH finds it


@pytest.mark.parametrize(
    ("a", "b"), [(EN, EN_OTHER), (ZH, ZH_OTHER), (EN, DE), (DE, RU), (ZH, TH), (EN, ZH)]
)
def test_distinct_stories_are_not_merged(a: str, b: str) -> None:
    assert not same_story(sig(a), sig(b), THRESHOLD, CONTAINED)
    assert not same_story(sig(a), sig(b + " " + a[:40]), THRESHOLD, CONTAINED)


def test_a_short_story_in_a_long_wrapper_is_contained() -> None:
    """Jaccard is low (the wrapper is most of the copy); containment is not."""
    wrapper = " ".join(f"link{i}" for i in range(200))  # a list of other headlines
    original, copy = sig(EN), sig(wrapper + " " + EN + " " + wrapper)
    assert similarity(original.values, copy.values) < THRESHOLD
    assert same_story(original, copy, THRESHOLD, CONTAINED)
    assert not same_story(original, copy, THRESHOLD, None)
    assert not same_story(sig(EN_OTHER), copy, THRESHOLD, CONTAINED)


@pytest.mark.parametrize(
    ("jaccard", "a", "b", "expected"),
    [
        (1.0, 100, 100, 1.0),
        (0.5, 100, 100, 2 / 3),
        (0.25, 100, 400, 1.0),  # A inside B: |A∩B| = 0.25 × 500 / 1.25 = 100
        (0.1, 100, 400, 0.4545),
        (0.0, 100, 400, 0.0),
        (0.5, 0, 10, 0.0),
    ],
)
def test_containment(jaccard: float, a: int, b: int, expected: float) -> None:
    assert containment(jaccard, a, b) == pytest.approx(expected, abs=1e-4)


def test_short_texts_get_no_signature() -> None:
    assert signature("Ferry line to open", shingle_words=SHINGLE, min_words=MIN_WORDS) is None
    assert signature("", shingle_words=SHINGLE, min_words=1) is None
    assert signature("one two", shingle_words=SHINGLE, min_words=1) is not None


def test_signature_is_stable_and_its_hex_form_round_trips() -> None:
    s = sig(EN)
    assert len(s.values) == NUM_PERM
    assert all(0 <= v < 2**32 for v in s.values)
    assert s.shingles == len(tokens(EN)) - SHINGLE + 1  # no repeated 4-word run in EN
    assert sig(EN) == s  # deterministic: stored signatures stay comparable
    assert len(to_hex(s)) == 8 * (NUM_PERM + 1)
    assert from_hex(to_hex(s)) == s
    assert similarity(s.values, s.values) == 1.0
    assert similarity(s.values, s.values[:10]) == 0.0


def test_band_keys() -> None:
    s = sig(EN).values
    keys = band_keys(s)
    assert len(keys) == BANDS
    assert keys[0] == f"0:{s[0]:08x}{s[1]:08x}"
    assert len(set(keys)) == BANDS  # the band number keeps equal values apart


def _alert() -> Alert:
    return Alert(
        schema=1, alert_id="a" * 32, rule="ferries", rule_title="Ferries", score=3.0,
        threshold=1.0, title="Ferry to Svalbard", url="https://mirror.example/x", feed="b",
        feed_tags=(), entry_id="guid:b-1", published=None, detected_at="2026-11-23T22:00:00Z",
        lang="en", terms=(), body_source="page", body_note=None, channels=("c",),
    )  # fmt: skip


def test_also_seen_alert_is_a_deterministic_update_of_the_first() -> None:
    seen = Sighting(
        "b", "https://mirror.example/x", "2026-11-23T22:00:00Z", "guid:b-1", "text", 0.8
    )
    update = also_seen_alert(_alert(), "f" * 32, seen)
    assert update.kind == "also_seen"
    assert update.updates == "f" * 32
    assert update.also_seen == seen
    assert update.alert_id not in ("a" * 32, "f" * 32)
    assert also_seen_alert(_alert(), "f" * 32, seen).alert_id == update.alert_id
    assert also_seen_alert(_alert(), "e" * 32, seen).alert_id != update.alert_id
    assert Alert.from_json(update.to_json()) == update


def test_old_alert_documents_read_as_new_alerts() -> None:
    doc = _alert().to_json().replace(',"kind":"alert","also_seen":null', "")
    assert "kind" not in doc
    back = Alert.from_json(doc)
    assert back.kind == "alert"
    assert back.also_seen is None


def test_subscribe_prints_an_update_as_one() -> None:
    seen = Sighting("b", "https://mirror.example/x", "2026-11-23T22:00:00Z", "guid:b-1", "url", 1.0)
    text = format_alert(also_seen_alert(_alert(), "f" * 32, seen))
    assert f"also seen: the story of alert {'f' * 32} (same url, similarity 1)" in text
    assert "also seen" not in format_alert(_alert())
