from counting.terms import ScopeMatcher, driver_terms
from counting.windows import Bucket, aggregate, minute_of, window_minutes
from models.preprocess import preprocess


def test_window_minutes_and_offset():
    assert list(window_minutes(100, 3)) == [98, 99, 100]
    assert list(window_minutes(100, 2, offset_min=3)) == [96, 97]


def test_aggregate_rates_and_missing_minutes():
    buckets = {98: Bucket(10, 4, 3.5), 100: Bucket(30, 6, 9.0)}
    stats = aggregate(buckets, window_minutes(100, 3))
    assert (stats.total, stats.negative, stats.score_sum) == (40, 10, 12.5)
    assert stats.rate == 0.25 and stats.mean_score == 12.5 / 40
    assert (stats.start_ms, stats.end_ms) == (98 * 60_000, 101 * 60_000)
    assert aggregate({}, window_minutes(5, 5)).rate == 0.0


def test_minute_of():
    assert minute_of(119_999) == 1 and minute_of(120_000) == 2


def test_scope_matching_at_word_starts_and_phrases():
    m = ScopeMatcher(["delay", "Cancel", "lost luggage", "refund", "delay"])
    assert m.scopes == ["all", "term:delay", "term:cancel", "term:lost luggage", "term:refund"]
    assert m.match(preprocess("Flight Cancelled and #delayed")) == ["all", "term:delay", "term:cancel"]
    assert m.match(preprocess("they LOST   my luggage")) == ["all"]
    assert m.match(preprocess("lost  luggage again, want refunds")) == ["all", "term:lost luggage", "term:refund"]
    assert m.match(preprocess("no undelayed flights")) == ["all"]


def test_scope_matching_overlapping_terms_hashtags_and_word_starts():
    m = ScopeMatcher(["lost luggage", "luggage", "lost", "Lost  Luggage", "#fail", "can't"])
    assert m.terms == ("lost luggage", "luggage", "lost", "#fail", "can't")
    assert m.match("lost luggage") == ["all", "term:lost luggage", "term:luggage", "term:lost"]
    assert m.match("#lostluggage x") == ["all", "term:lost"]
    assert m.match("a ##lost b#luggage x#fail") == ["all"]
    assert m.match("epic #fail, can't land") == ["all", "term:#fail", "term:can't"]
    assert m.match("ungrateful luggage-lost") == ["all", "term:luggage", "term:lost"]
    assert ScopeMatcher([]).match("anything") == ["all"]


def test_scope_matching_with_fifty_terms_agrees_with_one_search_per_term():
    import re

    terms = [f"term{i}" for i in range(40)] + ["delay", "cancel", "lost luggage", "refund", "bag", "bags", "crew", "seat", "wifi", "gate"]
    m = ScopeMatcher(terms)
    patterns = [(f"term:{t}", re.compile(r"(?<![\w#])#?" + r"\s+".join(map(re.escape, t.split())))) for t in terms]
    texts = [preprocess(t) for t in (
        "term12 and #term3 but not xterm4, bags of #delays",
        "crewed seats, wifi-free gate_7 cancelled refund? lost luggage!",
        "term1term2 #bag #gate",
    )]
    for text in texts:
        assert m.match(text) == ["all", *(scope for scope, p in patterns if p.search(text))]


def test_driver_terms_skip_handles_urls_stopwords_numbers():
    text = preprocess("@united the WORST service, 5 hours waiting for my bag bag http://t.co/x")
    assert driver_terms(text) == ["worst", "service", "hours", "waiting", "bag"]


def test_preprocess_anonymises_and_normalises():
    assert preprocess("@United  Thanks&amp;bye https://t.co/AbC www.x.com/y SOOOOO good") == "<user> thanks&bye <url> <url> sooo good"
    assert preprocess("mail me at bob@example.com") == "mail me at bob@example.com"
    assert preprocess("see Foo.COM/x and http://localhost/a, www.Air.example") == "see <url> and <url> <url>"
    assert preprocess("no link. just dots... a.b") == "no link. just dots... a.b"
    assert preprocess("\u2003tab\there\u3000and\x1cthere\n") == "tab here and there"
