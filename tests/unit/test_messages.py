import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.messages import InvalidMessage, decode, late_reason

NOW = 1_760_000_000_000
OPTS = dict(kafka_timestamp_ms=NOW - 5_000, now_ms=NOW, max_text_chars=1000, future_tolerance_ms=300_000, retention_ms=48 * 3600_000)


def test_minimal_message_uses_kafka_timestamp():
    tweet = decode(b'{"id": 42, "text": "late again"}', **OPTS)
    assert (tweet.id, tweet.text, tweet.event_ms) == ("42", "late again", NOW - 5_000)


@pytest.mark.parametrize(
    "created_at, expected",
    [
        ('"2025-10-09T08:53:20Z"', 1_760_000_000_000),
        ('"2025-10-09T10:53:20+02:00"', 1_760_000_000_000),
        ('"2025-10-09T08:53:20"', 1_760_000_000_000),
        ('"Thu Oct 09 08:53:20 +0000 2025"', 1_760_000_000_000),
        ("1759999990000", 1_759_999_990_000),
        ("1759999990", 1_759_999_990_000),
    ],
)
def test_created_at_formats(created_at, expected):
    tweet = decode(b'{"id": "a", "text": "x", "created_at": %s}' % created_at.encode(), **OPTS)
    assert tweet.event_ms == expected


def test_optional_fields_and_unknown_fields_are_accepted():
    tweet = decode(b'{"id": "a", "text": "x", "lang": "en", "source": "feed", "user": "@bob", "extra": [1]}', **OPTS)
    assert (tweet.lang, tweet.source, tweet.url) == ("en", "feed", None)
    assert not hasattr(tweet, "user")


def test_a_post_link_must_be_http_or_https():
    assert decode(b'{"id": "a", "text": "x", "url": "https://example.test/p/1"}', **OPTS).url == "https://example.test/p/1"
    assert decode(b'{"id": "a", "text": "x", "url": "HTTP://example.test/p?q=1#f"}', **OPTS).url == "HTTP://example.test/p?q=1#f"
    assert decode(b'{"id": "a", "text": "x", "url": ""}', **OPTS).url is None


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", "empty message"),
        (None, "empty message"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b'{"id": 1, "text": ', "invalid JSON"),
        (b"[1, 2]", "expected a JSON object, got array"),
        (b'"text"', "expected a JSON object, got string"),
        (b'{"text": "x"}', "missing field 'id'"),
        (b'{"id": null, "text": "x"}', "missing field 'id'"),
        (b'{"id": true, "text": "x"}', "field 'id' must be a string or integer, got boolean"),
        (b'{"id": 1.5, "text": "x"}', "field 'id' must be a string or integer, got number"),
        (b'{"id": "  ", "text": "x"}', "field 'id' is empty"),
        (b'{"id": 1}', "missing field 'text'"),
        (b'{"id": 1, "text": 5}', "field 'text' must be a string, got integer"),
        (b'{"id": 1, "text": "   "}', "field 'text' is empty"),
        (b'{"id": 1, "text": "x", "lang": 3}', "field 'lang' must be a string, got integer"),
        (b'{"id": 1, "text": "x", "url": 3}', "field 'url' must be a string, got integer"),
        (b'{"id": 1, "text": "x", "url": "javascript:alert(1)"}', "field 'url' must be an http(s) link, got 'javascript:alert(1)'"),
        (b'{"id": 1, "text": "x", "url": "/p/1"}', "field 'url' must be an http(s) link, got '/p/1'"),
        (b'{"id": 1, "text": "x", "url": "https://"}', "field 'url' must be an http(s) link, got 'https://'"),
        (b'{"id": 1, "text": "x", "url": "https://a.test/x y"}', "field 'url' must be an http(s) link"),
        (b'{"id": 1, "text": "x", "url": "https://[::1"}', "field 'url' must be an http(s) link"),
        (b'{"id": 1, "text": "x", "created_at": "yesterday"}', "field 'created_at' is not an ISO-8601 time"),
        (b'{"id": 1, "text": "x", "created_at": true}', "field 'created_at' must be ISO-8601 text or epoch milliseconds, got boolean"),
        (b'{"id": 1, "text": "x", "created_at": {}}', "field 'created_at' must be ISO-8601 text or epoch milliseconds, got object"),
        (b'{"id": 1, "text": "x", "created_at": "2999-01-01T00:00:00Z"}', "is in the future"),
        (b'{"id": 1, "text": "x", "created_at": "2001-01-01T00:00:00Z"}', "older than the counter retention"),
    ],
)
def test_rejections_carry_a_reason(raw, reason):
    with pytest.raises(InvalidMessage) as err:
        decode(raw, **OPTS)
    assert reason in str(err.value)


def test_text_over_the_limit_is_rejected():
    raw = b'{"id": 1, "text": "%s"}' % (b"a" * 1001)
    with pytest.raises(InvalidMessage, match="1001 characters, more than the limit of 1000"):
        decode(raw, **OPTS)


def test_late_reason():
    assert late_reason(NOW - 10_000, NOW, 60_000) is None
    assert late_reason(NOW - 61_000, 0, 60_000) is None
    assert "late event" in late_reason(NOW - 61_000, NOW, 60_000)


@given(st.binary(max_size=300))
def test_decoder_never_raises_anything_but_invalid_message(raw):
    try:
        decode(raw, **OPTS)
    except InvalidMessage as exc:
        assert str(exc)


@given(
    st.dictionaries(
        st.sampled_from(["id", "text", "created_at", "lang", "user", "source", "other"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30), st.lists(st.integers(), max_size=2)),
    )
)
def test_decoder_total_on_arbitrary_objects(body):
    import json

    try:
        tweet = decode(json.dumps(body).encode(), **OPTS)
    except InvalidMessage:
        return
    assert tweet.text.strip() and tweet.id
