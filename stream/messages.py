"""The raw-post contract: bytes from ``tweets.raw`` in, a validated ``Tweet`` or a reason out.

Pure functions only; the agent decides what to do with a rejection (the dead-letter topic)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import orjson


class InvalidMessage(ValueError):
    """The message breaks the contract; ``str(exc)`` is the reason stored in the DLQ."""


@dataclass(frozen=True, slots=True)
class Tweet:
    id: str
    text: str
    event_ms: int
    lang: str | None = None
    source: str | None = None
    # Where people can read the post (shown beside the alert's example posts).
    url: str | None = None


_OPTIONAL_STRINGS = ("lang", "user", "source", "url")
MAX_URL_CHARS = 2048
# Twitter's own v1.1 format, which many social-listening exports keep verbatim.
_TWITTER_FORMAT = "%a %b %d %H:%M:%S %z %Y"
# Epoch values below this are seconds, not milliseconds (1e11 ms is 1973; 1e11 s is year 5138).
_EPOCH_MS_MIN = 100_000_000_000


def decode(
    raw: bytes | None,
    *,
    kafka_timestamp_ms: int | None,
    now_ms: int,
    max_text_chars: int,
    future_tolerance_ms: int,
    retention_ms: int,
) -> Tweet:
    if not raw:
        raise InvalidMessage("empty message")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidMessage("not valid UTF-8") from None
        raise InvalidMessage(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidMessage(f"expected a JSON object, got {_json_type(body)}")

    post_id = _post_id(body)
    text = _text(body, max_text_chars)
    for field in _OPTIONAL_STRINGS:
        value = body.get(field)
        if value is not None and not isinstance(value, str):
            raise InvalidMessage(f"field '{field}' must be a string, got {_json_type(value)}")

    event_ms = _event_ms(body.get("created_at"), kafka_timestamp_ms, now_ms)
    if event_ms > now_ms + future_tolerance_ms:
        raise InvalidMessage(f"event time {_iso(event_ms)} is in the future (now {_iso(now_ms)})")
    if event_ms < now_ms - retention_ms:
        raise InvalidMessage(f"event time {_iso(event_ms)} is older than the counter retention")
    return Tweet(id=post_id, text=text, event_ms=event_ms, lang=body.get("lang"), source=body.get("source"), url=_url(body.get("url")))


def late_reason(event_ms: int, watermark_ms: int, allowed_lateness_ms: int) -> str | None:
    """Why an event is too late to count, or None. Windows already evaluated past the
    allowed lateness would silently change under the alerts that were sent from them."""
    if watermark_ms and event_ms < watermark_ms - allowed_lateness_ms:
        return (
            f"late event: event time {_iso(event_ms)} is more than {allowed_lateness_ms // 1000}s "
            f"behind the newest event {_iso(watermark_ms)}"
        )
    return None


def _post_id(body: dict) -> str:
    if "id" not in body or body["id"] is None:
        raise InvalidMessage("missing field 'id'")
    value = body["id"]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidMessage(f"field 'id' must be a string or integer, got {_json_type(value)}")
    post_id = str(value).strip()
    if not post_id:
        raise InvalidMessage("field 'id' is empty")
    if len(post_id) > 256:
        raise InvalidMessage("field 'id' is longer than 256 characters")
    return post_id


def _text(body: dict, max_chars: int) -> str:
    if "text" not in body or body["text"] is None:
        raise InvalidMessage("missing field 'text'")
    text = body["text"]
    if not isinstance(text, str):
        raise InvalidMessage(f"field 'text' must be a string, got {_json_type(text)}")
    if not text.strip():
        raise InvalidMessage("field 'text' is empty")
    if len(text) > max_chars:
        raise InvalidMessage(f"field 'text' has {len(text)} characters, more than the limit of {max_chars}")
    return text


def _url(value: str | None) -> str | None:
    """An absolute http(s) link, or None: anything else (``javascript:``, a relative
    path) would become a live link on the console's pages."""
    if value is None or value == "":
        return None
    if len(value) > MAX_URL_CHARS:
        raise InvalidMessage(f"field 'url' is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise InvalidMessage(f"field 'url' must be an http(s) link, got {value[:64]!r}")
    return value


def _event_ms(created_at: object, kafka_timestamp_ms: int | None, now_ms: int) -> int:
    if created_at is None:
        return kafka_timestamp_ms if kafka_timestamp_ms and kafka_timestamp_ms > 0 else now_ms
    if isinstance(created_at, bool):
        raise InvalidMessage("field 'created_at' must be ISO-8601 text or epoch milliseconds, got boolean")
    if isinstance(created_at, (int, float)):
        if created_at != created_at or created_at in (float("inf"), float("-inf")):
            raise InvalidMessage("field 'created_at' is not a finite number")
        value = int(created_at)
        return value if abs(value) >= _EPOCH_MS_MIN else value * 1000
    if isinstance(created_at, str):
        return _parse_time_text(created_at.strip())
    raise InvalidMessage(f"field 'created_at' must be ISO-8601 text or epoch milliseconds, got {_json_type(created_at)}")


def _parse_time_text(text: str) -> int:
    if text.isdigit():
        return _event_ms(int(text), None, 0)
    for parse in (_parse_iso, _parse_twitter):
        try:
            moment = parse(text)
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    raise InvalidMessage(f"field 'created_at' is not an ISO-8601 time: {text[:64]!r}")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _parse_twitter(text: str) -> datetime:
    return datetime.strptime(text, _TWITTER_FORMAT)


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"


def _json_type(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
