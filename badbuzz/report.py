"""``badbuzz report`` and ``badbuzz compare``: what happened over a period, read from Redis.

The report covers volumes and negative rates per scope (the minute buckets, or the hourly
rollups for periods longer than the counters are kept), incidents (the alerts kept in the
outbox, ``BADBUZZ_OUTBOX_RETENTION_S``), feedback (the feedback store), the shadow
comparison of champion and challenger, and drift. It renders as JSON or Markdown, and can
be posted to Slack. ``compare`` summarises the shadow comparison and logs it as metrics on
each challenger's MLflow run. Numbers and ids only: no post text, no user handle."""
from __future__ import annotations

import re
import time
from collections import Counter as Tally
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis

from alerting.alert import Alert
from alerting.feedback import FeedbackStore
from alerting.incidents import IncidentHistory
from alerting.outbox import Outbox, OutboxConfig
from alerting.quality import read_alert_quality
from config.connections import redis_client
from config.settings import Settings
from counting.counters import Counters
from counting.terms import ScopeMatcher
from counting.windows import GLOBAL_SCOPE, MINUTE_MS
from models.registry import ModelRegistry
from stream.drift_monitor import DriftStore
from stream.shadow import PairTotals, ShadowStore

HOUR_MS = 3_600_000
_PERIOD = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SEVERITY_RANK = {"watch": 0, "warning": 1, "critical": 2}
SLACK_TEXT_LIMIT = 39_000


def parse_period(text: str) -> int:
    """``24h``, ``90m``, ``7d`` or ``3600s`` as seconds."""
    match = _PERIOD.match(text or "")
    if not match or int(match[1]) == 0:
        raise ValueError(f"--since {text!r}: expected a positive duration such as 24h, 90m or 7d")
    return int(match[1]) * _UNIT_S[match[2]]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Period:
    since_ms: int
    until_ms: int

    @property
    def hours(self) -> range:
        return range(self.since_ms // HOUR_MS, self.until_ms // HOUR_MS + 1)

    @property
    def minutes(self) -> range:
        return range(self.since_ms // MINUTE_MS, self.until_ms // MINUTE_MS + 1)


def period_ending(now_ms: int, seconds: int) -> Period:
    return Period(now_ms - seconds * 1000, now_ms)


def _rate(negative: int, total: int) -> float | None:
    return negative / total if total else None


async def volumes(redis: aioredis.Redis, settings: Settings, period: Period) -> dict:
    """Posts and negatives per scope over the period, and per hour for all posts. Minute
    buckets while the period is within the counters' retention, hourly rollups beyond it
    (then whole hours)."""
    scopes = ScopeMatcher(settings.watch_terms).scopes
    counters = Counters(redis, prefix=settings.redis_prefix, ttl_s=settings.counter_ttl_s)
    by_minute = period.until_ms - period.since_ms <= settings.counter_ttl_s * 1000
    snapshot = await counters.snapshot(scopes, period.minutes if by_minute else range(0), [] if by_minute else list(period.hours))
    per_scope = {}
    hourly: dict[int, list[int]] = {}
    for scope in scopes:
        minutes, hours = snapshot[scope]
        pairs = [(b.total, b.negative) for b in minutes.values()] if by_minute else [(h.total, h.negative) for h in hours.values()]
        total, negative = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
        per_scope[scope] = {"posts": total, "negative": negative, "negative_rate": _rate(negative, total)}
        if scope == GLOBAL_SCOPE:
            rows = [(m // 60, b.total, b.negative) for m, b in minutes.items()] if by_minute else [(h, b.total, b.negative) for h, b in hours.items()]
            for hour, total_h, negative_h in rows:
                acc = hourly.setdefault(hour, [0, 0])
                acc[0] += total_h
                acc[1] += negative_h
    series = [
        {"hour": iso(hour * HOUR_MS), "posts": n, "negative": neg, "negative_rate": _rate(neg, n)}
        for hour, (n, neg) in sorted(hourly.items())
    ]
    return {"source": "minute buckets" if by_minute else "hourly rollups", "scopes": per_scope, "hourly": series}


async def incidents(redis: aioredis.Redis, settings: Settings, period: Period) -> list[dict]:
    """Incidents announced during the period, from the alerts the outbox keeps."""
    alerts = await Outbox(redis, prefix=settings.redis_prefix, sinks=(), cfg=OutboxConfig.from_settings(settings)).kept_alerts()
    since, until = iso(period.since_ms), iso(period.until_ms)
    grouped: dict[str, list[Alert]] = {}
    for alert in alerts:
        if since <= alert.created_at <= until:
            grouped.setdefault(alert.incident_id, []).append(alert)
    out = []
    for incident_id, seq in grouped.items():
        seq.sort(key=lambda a: a.seq)
        first, last = seq[0], seq[-1]
        out.append({
            "incident_id": incident_id,
            "signal": first.signal,
            "scope": first.scope,
            "severity": max((a.severity for a in seq), key=lambda s: _SEVERITY_RANK.get(s, -1)),
            "first_announced": first.created_at,
            "last_action": last.action,
            "last_announced": last.created_at,
            "announcements": len(seq),
            "headline": last.headline,
            "numbers": last.numbers,
            "model": last.model,
        })
    return sorted(out, key=lambda i: i["first_announced"])


def feedback_summary(records: list[dict]) -> dict:
    verdicts = Tally("unknown" if r.get("wrong") is None else "wrong" if r["wrong"] else "right" for r in records)
    per_version: dict[str, list[int]] = {}
    for r in records:
        if r.get("wrong") is not None:
            acc = per_version.setdefault(str(r.get("model_version")), [0, 0])
            acc[0] += 1
            acc[1] += 0 if r["wrong"] else 1
    judged = verdicts["right"] + verdicts["wrong"]
    return {
        "records": len(records),
        "labels": dict(sorted(Tally(r["label"] for r in records).items())),
        "right": verdicts["right"],
        "wrong": verdicts["wrong"],
        "unknown": verdicts["unknown"],
        "accuracy": verdicts["right"] / judged if judged else None,
        "accuracy_by_model_version": {v: right / n for v, (n, right) in sorted(per_version.items())},
    }


def shadow_rows(pairs: dict[tuple[str, str], PairTotals]) -> list[dict]:
    return [{"champion": c, "challenger": ch, **t.as_dict()} for (c, ch), t in sorted(pairs.items())]


async def drift_summary(redis: aioredis.Redis, prefix: str, period: Period) -> dict:
    store = DriftStore(redis, prefix=prefix, window_min=1)
    hours = await store.summaries(period.hours.start, period.hours.stop - 1)
    rows = [
        {
            "hour": iso(h * HOUR_MS),
            "version": v.get("version", ""),
            "psi_max": _float(v.get("psi_max")),
            "oov_rate_max": _float(v.get("oov_rate_max")),
            "psi_last": _float(v.get("psi")),
            "oov_rate_last": _float(v.get("oov_rate")),
            "window_posts_last": int(v.get("posts", 0)),
        }
        for h, v in sorted(hours.items())
    ]
    psis = [r["psi_max"] for r in rows if r["psi_max"] is not None]
    oovs = [r["oov_rate_max"] for r in rows if r["oov_rate_max"] is not None]
    return {
        "psi_max": max(psis) if psis else None,
        "oov_rate_max": max(oovs) if oovs else None,
        "alerts": len(await store.alerts_since(period.since_ms)),
        "hourly": rows,
    }


def _float(value: str | None) -> float | None:
    return None if value is None else float(value)


async def build_report(settings: Settings, period: Period, *, redis: aioredis.Redis | None = None) -> dict:
    own = redis is None
    redis = redis or redis_client(settings)
    prefix = settings.redis_prefix
    feedback = FeedbackStore(redis, prefix=prefix, ttl_s=settings.feedback_ttl_s)
    try:
        return {
            "period": {"since": iso(period.since_ms), "until": iso(period.until_ms)},
            "volumes": await volumes(redis, settings, period),
            "incidents": await incidents(redis, settings, period),
            "alert_quality": (await read_alert_quality(IncidentHistory(redis, prefix=prefix), since_ms=period.since_ms, until_ms=period.until_ms)).to_dict(),
            "feedback": feedback_summary(await feedback.submitted_since(period.since_ms)),
            "models": shadow_rows(await ShadowStore(redis, prefix=prefix).totals(period.hours.start, period.hours.stop - 1)),
            "drift": await drift_summary(redis, prefix, period),
        }
    finally:
        if own:
            await redis.aclose()


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers), *("| " + " | ".join(r) + " |" for r in rows)]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} s"


def quality_lines(q: dict) -> list[str]:
    ack = q["ack_seconds"]
    lines = [
        f"{q['incidents']} incident(s) opened ({q['incidents_per_week']:.1f} a week); {q['acknowledged']} acknowledged, "
        f"time to acknowledge median {_seconds(ack['median'])}, 90th percentile {_seconds(ack['p90'])}, longest {_seconds(ack['max'])}; "
        f"{q['false_alarms']} false alarm(s); {q['silenced_notifications']} notification(s) silenced."
    ]
    if q["false_alarm_ratio"]:
        lines += [""] + _table(
            ["signal", "scope", "incidents", "false alarms", "share"],
            [[r["signal"], r["scope"], str(r["incidents"]), str(r["false_alarms"]), _pct(r["ratio"])] for r in q["false_alarm_ratio"]],
        )
    return lines


def render_markdown(report: dict) -> str:
    p, v, f, d = report["period"], report["volumes"], report["feedback"], report["drift"]
    lines = [f"# Bad-buzz report {p['since']} .. {p['until']}", "", f"## Volumes and negative rates ({v['source']}, event time)", ""]
    lines += _table(["scope", "posts", "negative", "negative rate"], [
        [scope, str(s["posts"]), str(s["negative"]), _pct(s["negative_rate"])] for scope, s in v["scopes"].items()
    ])
    busiest = max(v["hourly"], key=lambda h: h["posts"], default=None)
    if busiest:
        lines += ["", f"Busiest hour: {busiest['hour']} with {busiest['posts']} posts ({_pct(busiest['negative_rate'])} negative)."]
    lines += ["", f"## Incidents ({len(report['incidents'])})", ""]
    if report["incidents"]:
        lines += _table(
            ["incident", "signal", "scope", "severity", "first announced", "last", "announcements"],
            [
                [
                    i["incident_id"],
                    i["signal"],
                    i["scope"],
                    i["severity"],
                    i["first_announced"],
                    f"{i['last_action']} {i['last_announced']}",
                    str(i["announcements"]),
                ]
                for i in report["incidents"]
            ],
        )
    else:
        lines.append("None.")
    lines += ["", "## Alert quality", "", *quality_lines(report["alert_quality"])]
    lines += ["", "## Feedback", ""]
    labels = ", ".join(f"{label} {n}" for label, n in f["labels"].items()) or "-"
    lines.append(
        f"{f['records']} records ({labels}); the model was right on {f['right']}, wrong on {f['wrong']}, "
        f"unknown for {f['unknown']}: accuracy {_pct(f['accuracy'])}."
    )
    lines += ["", "## Champion vs challenger (shadow scoring)", ""]
    if report["models"]:
        lines += _table(
            ["champion", "challenger", "posts", "agreement", "mean abs delta", "negative rate (champ / chall)", "ms/post (champ / chall)"],
            [
                [
                    f"v{m['champion']}",
                    f"v{m['challenger']}",
                    str(m["posts"]),
                    _pct(m["agreement"]),
                    _num(m["mean_abs_delta"]),
                    f"{_pct(m['champion_negative_rate'])} / {_pct(m['challenger_negative_rate'])}",
                    f"{_num(m['champion_ms_per_post'])} / {_num(m['challenger_ms_per_post'])}",
                ]
                for m in report["models"]
            ],
        )
    else:
        lines.append("No shadow scoring in this period (no challenger alias, or BADBUZZ_SHADOW_FRACTION=0).")
    lines += ["", "## Drift", ""]
    if d["hourly"]:
        lines.append(f"Highest score PSI {_num(d['psi_max'])}, highest out-of-vocabulary rate {_pct(d['oov_rate_max'])}; {d['alerts']} drift alert(s).")
        lines += [""] + _table(
            ["hour", "model", "PSI max", "OOV max", "window posts"],
            [[h["hour"], f"v{h['version']}", _num(h["psi_max"]), _pct(h["oov_rate_max"]), str(h["window_posts_last"])] for h in d["hourly"]],
        )
    else:
        lines.append(f"No drift checks recorded in this period; {d['alerts']} drift alert(s).")
    return "\n".join(lines) + "\n"


async def post_to_slack(settings: Settings, text: str) -> None:
    """Through the configured Slack sink's client (bot token first, then the webhook)."""
    from alerting.slack import SlackBotSink, SlackDeliveryError, SlackWebhookSink

    s = settings
    body = "```\n" + text[:SLACK_TEXT_LIMIT] + "\n```"
    if s.slack_bot_token is not None:
        sink = SlackBotSink(s.slack_bot_token.get_secret_value(), s.slack_channel, None, prefix=s.redis_prefix, ttl_s=1, base_url=s.slack_api_url)
        response = await sink.client.chat_postMessage(channel=s.slack_channel, text=body, mrkdwn=True)
        if not response.get("ok"):
            raise SlackDeliveryError(f"chat.postMessage failed: {response.get('error')}")
        return
    if s.slack_webhook_url is not None:
        sink = SlackWebhookSink(s.slack_webhook_url.get_secret_value())
        response = await sink.client.send(text=body)
        if response.status_code != 200:
            raise SlackDeliveryError(f"Slack webhook answered {response.status_code}")
        return
    raise ValueError("--slack: Slack is not configured (set SLACK_WEBHOOK_URL, or SLACK_BOT_TOKEN and SLACK_CHANNEL)")


# --- badbuzz compare ---------------------------------------------------------------------


async def shadow_totals(settings: Settings, period: Period) -> dict[tuple[str, str], PairTotals]:
    redis = redis_client(settings)
    try:
        return await ShadowStore(redis, prefix=settings.redis_prefix).totals(period.hours.start, period.hours.stop - 1)
    finally:
        await redis.aclose()


def comparison_metrics(champion: str, totals: PairTotals) -> dict[str, float]:
    """What ``compare`` logs on the challenger's run, named after the champion it faced."""
    suffix = f"_vs_v{champion}"
    values = {f"shadow_{name}{suffix}": value for name, value in totals.as_dict().items() if value is not None}
    return values


def log_comparison(settings: Settings, pairs: dict[tuple[str, str], PairTotals], *, now_ms: int | None = None) -> list[str]:
    """Log each pair's figures on its challenger version's run; return the versions logged.
    A local bundle or a version from another registry has no run here to log on."""
    registry = ModelRegistry.of(settings)
    stamp = now_ms or int(time.time() * 1000)
    return [
        challenger
        for (champion, challenger), totals in sorted(pairs.items())
        if registry.log_version_metrics(challenger, comparison_metrics(champion, totals), stamp_ms=stamp)
    ]


def render_comparison(pairs: dict[tuple[str, str], PairTotals], period: Period) -> str:
    lines = [f"shadow comparison {iso(period.since_ms)} .. {iso(period.until_ms)}"]
    if not pairs:
        lines.append("no shadow-scored posts in this period (is a challenger set? BADBUZZ_SHADOW_FRACTION > 0?)")
        return "\n".join(lines) + "\n"
    lines += _table(
        ["champion", "challenger", "posts", "agreement", "mean abs delta", "negative rate (champ / chall)", "ms/post (champ / chall)"],
        [
            [
                f"v{c}",
                f"v{ch}",
                str(t.posts),
                _pct(t.agreement),
                _num(t.mean_abs_delta),
                f"{_pct(t.champion_negative_rate)} / {_pct(t.challenger_negative_rate)}",
                f"{_num(t.champion_ms_per_post)} / {_num(t.challenger_ms_per_post)}",
            ]
            for (c, ch), t in sorted(pairs.items())
        ],
    )
    return "\n".join(lines) + "\n"
