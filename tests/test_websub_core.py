"""The pure WebSub core: hub discovery, signatures, subscription decisions."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.feedparse import parse_feed
from monitor.hublinks import (
    Discovery,
    HubLinks,
    discover,
    feed_links,
    header_links,
    parse_link_header,
)
from monitor.schedule import PollPolicy
from monitor.signature import check_signature, sign
from monitor.subscriptions import (
    Action,
    SubscriptionState,
    Timing,
    backoff_s,
    is_pushing,
    on_discovery,
    plan,
    push_policy,
    renew_at,
    verify_intent,
)

BASE = "http://news.test/feeds/world.xml"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("<http://h/hub>; rel=hub", [("http://h/hub", {"hub"})]),
        ('<http://h/hub>; rel="hub", <http://s/f>; rel="self"',
         [("http://h/hub", {"hub"}), ("http://s/f", {"self"})]),
        ('<http://a/x>; rel="hub self"', [("http://a/x", {"hub", "self"})]),
        ('<http://a/x>; title="a, b; c"; rel="HUB"', [("http://a/x", {"hub"})]),
        ('<http://a/x?q=1,2;3>; rel=hub', [("http://a/x?q=1,2;3", {"hub"})]),
        ('<http://a/x>; rel="self"; rel="hub"', [("http://a/x", {"self"})]),
        ('<http://a/x>; title="say \\"hi\\", rel=hub"', [("http://a/x", set())]),
        ("garbage, <>; rel=hub, <http://a/y>", [("http://a/y", set())]),
        ("<http://a/x", []),
        ("", []),
    ],
)  # fmt: skip
def test_parse_link_header(header: str, expected: list[tuple[str, set[str]]]) -> None:
    assert [(t, set(r)) for t, r in parse_link_header(header)] == expected


def test_header_links_resolve_relative_and_drop_non_http() -> None:
    links = header_links("</hub>; rel=hub, <ftp://x/y>; rel=hub, <world.xml>; rel=self", BASE)
    assert links == HubLinks(("http://news.test/hub",), "http://news.test/feeds/world.xml")
    assert header_links(None, BASE) == HubLinks()


def test_feed_links_keep_order_without_repeats() -> None:
    links = feed_links(
        [{"rel": "hub", "href": "http://h1/"}, {"rel": "alternate", "href": "http://x/"},
         {"rel": "hub", "href": "http://h2/"}, {"rel": "hub", "href": "http://h1/"},
         {"rel": "self", "href": "/self.xml"}, {"rel": "self", "href": "/other.xml"}],
        BASE,
    )  # fmt: skip
    assert links == HubLinks(("http://h1/", "http://h2/"), "http://news.test/self.xml")


@pytest.mark.parametrize(
    ("header", "document", "expected"),
    [
        (HubLinks(), HubLinks(), None),
        (HubLinks(), HubLinks(("http://d/",), "http://d/self"), Discovery("http://d/", "http://d/self")),
        (HubLinks(("http://h/",), None), HubLinks(("http://d/",), "http://d/self"),
         Discovery("http://h/", "http://d/self")),
        (HubLinks(("http://h/",), "http://h/self"), HubLinks(), Discovery("http://h/", "http://h/self")),
        (HubLinks(), HubLinks(("http://d/",), None), Discovery("http://d/", BASE)),
    ],
)  # fmt: skip
def test_discover_prefers_header_and_falls_back_to_fetched_url(
    header: HubLinks, document: HubLinks, expected: Discovery | None
) -> None:
    assert discover(header, document, BASE) == expected


@pytest.mark.parametrize("flavour", ["rss", "atom"])
def test_parse_feed_exposes_hub_and_self(flavour: str) -> None:
    if flavour == "rss":
        doc = (
            '<?xml version="1.0"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">'
            '<channel><title>t</title><atom:link rel="hub" href="http://hub.test/"/>'
            '<atom:link rel="self" href="/feeds/world.xml"/><item><title>a</title></item>'
            "</channel></rss>"
        )
    else:
        doc = (
            '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
            '<link rel="hub" href="http://hub.test/"/><link rel="self" href="/feeds/world.xml"/>'
            "<entry><title>a</title><id>x</id></entry></feed>"
        )
    parsed = parse_feed(doc.encode(), BASE, "world", None)
    assert parsed.hub_links.hubs == ("http://hub.test/",)
    assert parsed.hub_links.self_url == BASE


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha384", "sha512"])
def test_signature_roundtrip_each_algorithm(algorithm: str) -> None:
    header = sign(b"<feed/>", "s3cret", algorithm)
    assert header.startswith(algorithm + "=")
    assert check_signature(header, b"<feed/>", "s3cret") == "ok"
    assert check_signature(header.upper().replace("SHA", "sha", 1), b"<feed/>", "s3cret") == "ok"
    assert check_signature(header, b"<feed/> ", "s3cret") == "mismatch"
    assert check_signature(header, b"<feed/>", "other") == "mismatch"


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, "missing"), ("", "missing"), ("sha256", "malformed"), ("sha256=", "malformed"),
     ("md5=abcd", "unsupported"), ("sha1=zz", "mismatch"), ("sha1=\u00e9\u00e9", "mismatch")],
)  # fmt: skip
def test_signature_rejects(header: str | None, expected: str) -> None:
    assert check_signature(header, b"body", "k") == expected


T = Timing(renew_fraction=0.8, verify_timeout_s=100, backoff_base_s=10, backoff_ceiling_s=60)


def sub(state: str = "active", **kw: object) -> SubscriptionState:
    base = SubscriptionState(
        "world", "http://hub.test/", BASE, "secret", "tok", state,  # type: ignore[arg-type]
        requested_at=1000.0, verified_at=1000.0, lease_s=1000.0,
    )  # fmt: skip
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_state_survives_its_redis_hash() -> None:
    s = sub(failures=2, retry_at=5.0, reason="x")
    assert SubscriptionState.from_hash(s.to_hash()) == s
    fresh = sub("subscribing", verified_at=None, lease_s=None)
    assert SubscriptionState.from_hash(fresh.to_hash()) == fresh
    assert SubscriptionState.from_hash({**s.to_hash(), "state": "bogus"}) is None
    assert SubscriptionState.from_hash({**s.to_hash(), "secret": ""}) is None
    assert SubscriptionState.from_hash({}) is None


def test_backoff_doubles_to_the_ceiling() -> None:
    assert [backoff_s(n, T) for n in range(6)] == [0, 10, 20, 40, 60, 60]


def test_renewal_at_the_fraction_of_the_granted_lease() -> None:
    assert renew_at(sub(), T) == 1800.0
    assert renew_at(sub("subscribing", verified_at=None), T) is None


@pytest.mark.parametrize(
    ("state", "now", "expected"),
    [
        (sub(), 1799.0, []),
        (sub(), 1800.0, [Action("renew", "world", "lease nearly over")]),
        (sub(retry_at=1900.0), 1850.0, []),  # a renewal is in flight
        (sub(), 2000.0, [Action("subscribe", "world", "lease expired")]),
        (sub("subscribing", verified_at=None, requested_at=1000.0), 1099.0, []),
        (sub("subscribing", verified_at=None, requested_at=1000.0), 1100.0,
         [Action("subscribe", "world", "hub did not verify in time")]),
        (sub("failed", retry_at=1500.0), 1499.0, []),
        (sub("failed", retry_at=1500.0), 1500.0,
         [Action("subscribe", "world", "retry after failed")]),
        (sub("denied", retry_at=1500.0), 1600.0,
         [Action("subscribe", "world", "retry after denied")]),
        (sub("unsubscribing"), 1001.0, [Action("subscribe", "world", "feed is configured again")]),
    ],
)  # fmt: skip
def test_plan_for_a_configured_feed(
    state: SubscriptionState, now: float, expected: list[Action]
) -> None:
    assert plan({"world"}, {"world": state}, now, T) == expected


@pytest.mark.parametrize(
    ("state", "now", "kind"),
    [
        (sub(), 1001.0, "unsubscribe"),
        (sub("subscribing"), 1001.0, "unsubscribe"),
        (sub("subscribing", retry_at=5000.0), 1001.0, "unsubscribe"),  # backoff does not delay it
        (sub("unsubscribing", requested_at=1000.0), 1050.0, None),
        (sub("unsubscribing", requested_at=1000.0), 1100.0, "forget"),  # hub never confirmed
        (sub("failed"), 1001.0, "forget"),
        (sub("denied"), 1001.0, "forget"),
    ],
)
def test_plan_for_a_removed_feed(state: SubscriptionState, now: float, kind: str | None) -> None:
    actions = plan({"other"}, {"world": state}, now, T)
    assert [a.kind for a in actions] == ([kind] if kind else [])


def test_on_discovery() -> None:
    found = Discovery("http://hub.test/", BASE)
    assert on_discovery("world", found, None, 0).kind == "subscribe"  # type: ignore[union-attr]
    assert on_discovery("world", found, sub(), 0) is None
    assert on_discovery("world", found, sub("subscribing"), 0) is None
    moved = Discovery("http://hub2.test/", BASE)
    assert on_discovery("world", moved, sub(), 0) == Action(
        "subscribe", "world", "hub or topic changed"
    )
    assert on_discovery("world", None, sub(), 0) == Action(
        "unsubscribe", "world", "the feed no longer names a hub"
    )
    assert on_discovery("world", None, sub("failed"), 0) == Action(
        "forget", "world", "the feed no longer names a hub"
    )
    assert on_discovery("world", None, sub("unsubscribing"), 0) is None
    assert on_discovery("world", None, None, 0) is None


def test_verify_intent_confirms_only_what_we_asked() -> None:
    pending = sub("subscribing", verified_at=None, lease_s=None, failures=3, retry_at=9.0)
    ok = verify_intent(pending, "subscribe", BASE, 500.0, 2000.0)
    assert ok.accept
    assert ok.store == dataclasses.replace(
        pending, state="active", verified_at=2000.0, lease_s=500.0, failures=0, retry_at=None
    )
    # A renewal keeps the old lease when the hub names none.
    renewed = verify_intent(sub(), "subscribe", BASE, None, 3000.0)
    assert renewed.accept and renewed.store is not None
    assert (renewed.store.verified_at, renewed.store.lease_s) == (3000.0, 1000.0)
    assert not verify_intent(None, "subscribe", BASE, 5.0, 0).accept
    assert not verify_intent(pending, "subscribe", "http://evil/", 5.0, 0).accept
    assert not verify_intent(sub("failed"), "subscribe", BASE, 5.0, 0).accept
    assert not verify_intent(sub(), "unsubscribe", BASE, None, 0).accept  # we never asked
    gone = verify_intent(sub("unsubscribing"), "unsubscribe", BASE, None, 0)
    assert gone.accept and gone.store is None
    assert not verify_intent(sub(), "bogus", BASE, None, 0).accept


def test_denial_backs_off() -> None:
    d = verify_intent(sub("subscribing", failures=1), "denied", BASE, None, 100.0, reason="no",
                      timing=T)  # fmt: skip
    assert d.store is not None
    assert (d.store.state, d.store.failures, d.store.retry_at, d.store.reason) == (
        "denied",
        2,
        120.0,
        "no",
    )


def test_is_pushing() -> None:
    assert is_pushing(sub(), 1999.0)
    assert not is_pushing(sub(), 2000.0)  # lease ran out
    assert not is_pushing(sub("subscribing"), 1500.0)
    assert not is_pushing(None, 0)


def test_push_policy_polls_at_the_safety_interval() -> None:
    p = push_policy(PollPolicy(interval_s=300, max_interval_s=3600), 21600)
    assert (p.interval_s, p.max_interval_s, p.adapt_weight) == (21600, 21600, 0.0)
    assert p.backoff_base_s == 60.0  # errors still back off from the usual base


@given(st.text(max_size=300))
def test_link_header_parser_takes_any_text(value: str) -> None:
    for target, rels in parse_link_header(value):
        assert target and ">" not in target
        assert all(r == r.lower() for r in rels)
    assert isinstance(header_links(value, BASE), HubLinks)


@given(st.one_of(st.none(), st.text(max_size=200)), st.binary(max_size=200))
def test_signature_check_takes_any_header(header: str | None, body: bytes) -> None:
    assert check_signature(header, body, "k") in ("missing", "malformed", "unsupported", "mismatch")
