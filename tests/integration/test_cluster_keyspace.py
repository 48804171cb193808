"""Every store of shared state works on a real Redis Cluster: its scripts, transactions
and multi-key reads all stay inside the one hash slot of ``shared_keyspace``. A single
node that owns all 16384 slots is enough to prove it: it refuses CROSSSLOT commands
and the cluster client routes each script by its keys, exactly as a sharded cluster does."""
from __future__ import annotations

import uuid
from dataclasses import replace

import numpy as np
import pytest
from redis.crc import key_slot

from alerting.actions import ActionRequest, IncidentActions
from alerting.alert import Alert
from alerting.feedback import FeedbackStore, make_feedback
from alerting.incidents import IncidentHistory, IncidentStore, next_incident
from alerting.outbox import Outbox, OutboxConfig
from alerting.presets import Presets
from alerting.rules import Action, Assessment, Baseline, Decision, Severity, Signal
from alerting.silences import Silences
from alerting.slack import SlackBotSink
from benchmarks.keys import prefix_keys
from config.connections import redis_client, shared_keyspace
from config.settings import Settings
from console.accounts import Accounts
from counting.counters import Prediction
from models.drift import DriftStatus
from models.scorer import ModelInfo
from stream.drift_monitor import DriftStore
from stream.shadow import PairTotals, ShadowStore
from tests.configs import DEFAULTS, rule_config
from tests.loopback import Loopback

pytestmark = pytest.mark.integration

MINUTE = 29_000_000
NOW_MS = MINUTE * 60_000
MODEL = ModelInfo("tfidf", "negative_vs_rest", 0.5, "badbuzz-sentiment", "3", "models:/badbuzz-sentiment/3")


@pytest.fixture
async def cluster(one_node_cluster):
    settings = Settings.model_construct(redis_mode="cluster", redis_url=one_node_cluster, redis_prefix=f"test:cluster:{uuid.uuid4().hex[:10]}")
    client = redis_client(settings)
    yield client, settings.redis_prefix
    # Whatever a test wrote lives in the shared tag's slot, or the stores leak keys elsewhere.
    written = await prefix_keys(client, settings.redis_prefix)
    assert {key_slot(k) for k in written} <= {key_slot(shared_keyspace(settings.redis_prefix).encode())}
    if written:
        await client.unlink(*written)
    await client.aclose()


def decision(action: Action, severity: Severity = Severity.WARNING) -> Decision:
    return Decision(action, severity, Baseline(0.2, 10.0, "trailing", 500), Assessment(True, action is Action.RESOLVE, severity, 1e-9, 1.0))


def announcement(incident, action: Action) -> Alert:
    return Alert(
        alert_id=incident.alert_id(), incident_id=incident.id, seq=incident.seq, signal=incident.signal.value,
        action=action.value, severity=incident.severity.value, scope=incident.scope,
        window_start="2026-01-01T11:46:00Z", window_end="2026-01-01T12:01:00Z", window_minutes=15,
    )


def stores(client, prefix: str, sinks=("kafka", "console")) -> tuple[Outbox, IncidentStore, IncidentHistory]:
    outbox = Outbox(client, prefix=prefix, sinks=list(sinks), cfg=OutboxConfig.from_settings(DEFAULTS))
    incidents = IncidentStore(client, prefix=prefix, ttl_s=3600, outbox=outbox, silences=Silences(client, prefix=prefix))
    return outbox, incidents, IncidentHistory(client, prefix=prefix)


async def test_incidents_are_announced_once_and_kept_in_the_history(cluster):
    client, prefix = cluster
    _, incidents, history = stores(client, prefix)
    opened = next_incident(None, Signal.NEGATIVE_RATE, "all", decision(Action.OPEN), MINUTE)
    assert await incidents.commit(None, opened, announcement(opened, Action.OPEN), now_ms=NOW_MS)
    rival = next_incident(None, Signal.NEGATIVE_RATE, "all", decision(Action.OPEN), MINUTE)
    assert not await incidents.commit(None, rival, announcement(rival, Action.OPEN), now_ms=NOW_MS)
    volume = next_incident(None, Signal.VOLUME, "all", decision(Action.OPEN), MINUTE)
    assert await incidents.commit(None, volume, announcement(volume, Action.OPEN), now_ms=NOW_MS + 1)

    found = await incidents.get_many([(Signal.NEGATIVE_RATE, "all"), (Signal.VOLUME, "all"), (Signal.NEGATIVE_RATE, "term:delay")])
    assert [None if i is None else i.id for i in found.values()] == [opened.id, volume.id, None]
    acknowledged = await IncidentActions(incidents, history, None, rule_config(), clock=lambda: NOW_MS / 1000 + 60).apply(
        opened.id, ActionRequest("acknowledge"), actor="ana"
    )
    assert (acknowledged.alert_id, acknowledged.actor) == (f"{opened.id}.2", "ana")
    assert await history.ids() == [opened.id, volume.id]
    kept = await history.alerts([opened.id, volume.id, rival.id])
    assert [a.action for a in kept[opened.id]] == ["opened", "acknowledged"]
    assert [len(kept[volume.id]), len(kept[rival.id])] == [1, 0]


async def test_the_outbox_claims_renews_acknowledges_and_retries(cluster):
    client, prefix = cluster
    outbox, incidents, _ = stores(client, prefix)
    opened = next_incident(None, Signal.NEGATIVE_RATE, "all", decision(Action.OPEN), MINUTE)
    assert await incidents.commit(None, opened, announcement(opened, Action.OPEN), now_ms=NOW_MS)
    direct = announcement(next_incident(None, Signal.VOLUME, "all", decision(Action.OPEN), MINUTE), Action.OPEN)
    assert await outbox.enqueue(direct, now_ms=NOW_MS)
    assert not await outbox.enqueue(direct, now_ms=NOW_MS)
    assert (await outbox.pending("kafka"), await outbox.pending("console")) == (2, 2)

    ids, lease = await outbox.claim("kafka", now_ms=NOW_MS, lease_s=30)
    assert sorted(ids) == sorted([opened.alert_id(), direct.alert_id])
    assert await outbox.claim("kafka", now_ms=NOW_MS + 1) == ([], NOW_MS + 1 + int(outbox.cfg.lease_s * 1000))
    assert await outbox.renew("kafka", opened.alert_id(), leased_until=lease, until_ms=lease + 60_000)
    assert not await outbox.renew("kafka", opened.alert_id(), leased_until=lease, until_ms=lease + 90_000)
    await outbox.ack("kafka", opened.alert_id())
    assert await outbox.is_delivered("kafka", opened.alert_id())
    assert await outbox.retry_later("kafka", direct.alert_id, now_ms=NOW_MS) == 1
    assert await outbox.retry_later("kafka", direct.alert_id, now_ms=NOW_MS) == 2
    await outbox.defer("console", direct.alert_id, until_ms=NOW_MS + 5000)
    await outbox.drop("kafka", direct.alert_id)
    assert not await outbox.is_queued("kafka", direct.alert_id)
    assert (await outbox.pending("kafka"), await outbox.pending("console")) == (0, 2)
    assert (await outbox.load(direct.alert_id)) == direct
    assert sorted(a.alert_id for a in await outbox.kept_alerts()) == sorted([opened.alert_id(), direct.alert_id])


async def test_a_silence_mutes_an_announcement_until_it_is_lifted(cluster):
    client, prefix = cluster
    outbox, incidents, history = stores(client, prefix)
    silences = Silences(client, prefix=prefix)
    silence = await silences.create(
        scope="all", signal=None, severity=None, starts_ms=NOW_MS - 1000, ends_ms=NOW_MS + 3_600_000, author="ana", reason="planned outage", now_ms=NOW_MS,
    )
    assert [s.id for s in await silences.current(now_ms=NOW_MS)] == [silence.id]
    muted = next_incident(None, Signal.NEGATIVE_RATE, "all", decision(Action.OPEN), MINUTE)
    assert await incidents.commit(None, muted, announcement(muted, Action.OPEN), now_ms=NOW_MS)
    assert (await outbox.pending("kafka"), (await history.alerts([muted.id]))[muted.id][0].muted_by) == (0, silence.id)
    assert (await silences.expire(silence.id, now_ms=NOW_MS + 1)).ends_ms == NOW_MS + 1
    assert await silences.current(now_ms=NOW_MS + 2) == []


async def test_presets_change_together_with_their_version(cluster):
    client, prefix = cluster
    presets = Presets(client, prefix=prefix)
    assert await presets.set("term:delay", "sensitive") == 1
    assert await presets.set("all", "strict") == 2
    assert await presets.set("all", "balanced") == 3
    assert await presets.current() == (3, {"term:delay": "sensitive"})
    assert await presets.version() == 3


async def test_feedback_is_recorded_and_read_back(cluster):
    client, prefix = cluster
    store = FeedbackStore(client, prefix=prefix, ttl_s=600)
    wrong = make_feedback("{post}:1", "negative", "says @someone", now_ms=NOW_MS)
    right = make_feedback("2", "negative", now_ms=NOW_MS + 1)
    await store.record(wrong, Prediction(0.1, False, "3"), MODEL, now_ms=NOW_MS + 5)
    await store.record(right, Prediction(0.9, True, "3"), MODEL, now_ms=NOW_MS + 6)
    assert (await store.get("{post}:1"))["wrong"] is True
    assert await store.wrong_since(NOW_MS - 1, NOW_MS + 10) == ["{post}:1"]
    assert [r["post_id"] for r in await store.submitted_since(NOW_MS)] == ["{post}:1", "2"]


async def test_console_accounts_sign_in_and_keep_sessions(cluster):
    client, prefix = cluster
    accounts = Accounts(client, prefix=prefix, login_attempts=2)
    await accounts.add_user("ana", "responder", "a long enough password")
    assert await accounts.sign_in("ana", "wrong password!", "10.0.0.1") is None
    principal = await accounts.sign_in("ana", "a long enough password", "10.0.0.1")
    assert (await accounts.session(principal.session)).name == "ana"
    await accounts.sign_out(principal.session)
    assert await accounts.session(principal.session) is None
    token = await accounts.create_token("ci", "viewer")
    assert (await accounts.bearer(token)).role == "viewer"
    assert [t["name"] for t in await accounts.tokens()] == ["ci"]
    assert await accounts.revoke_token("ci")
    await accounts.link_slack("ana", "U0123ABCD")
    assert (await accounts.slack_account("U0123ABCD")).name == "ana"
    await accounts.audit("ana", "signed in")
    assert [(e["who"], e["what"]) for e in await accounts.audit_trail()] == [("ana", "signed in")]
    assert [u["name"] for u in await accounts.users()] == ["ana"]
    assert await accounts.remove_user("ana")
    assert await accounts.slack_account("U0123ABCD") is None


async def test_drift_buckets_alerts_and_summaries(cluster):
    client, prefix = cluster
    drift = DriftStore(client, prefix=prefix, window_min=2)
    await drift.add("3", MINUTE - 1, np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 2]), tokens=30, oov=3, new_terms={"strike": 2})
    await drift.add("3", MINUTE, np.array([0, 4, 0, 0, 0, 0, 0, 0, 0, 0]), tokens=40, oov=5, new_terms={"strike": 1, "ash": 4})
    window = await drift.window("3", MINUTE)
    assert (window.score_counts[:2], window.score_counts[9], window.tokens, window.oov) == ((1, 4), 2, 70, 8)
    assert window.new_terms == (("ash", 4), ("strike", 3))
    await drift.record_alert("model-drift-1", NOW_MS)
    assert await drift.alerts_since(NOW_MS - 1) == ["model-drift-1"]
    await drift.record_summary(NOW_MS, "3", DriftStatus(700, 0.31, 0.12))
    await drift.record_summary(NOW_MS + 1000, "3", DriftStatus(720, 0.05, 0.2))
    hour = NOW_MS // 3_600_000
    summary = (await drift.summaries(hour, hour))[hour]
    assert (summary["psi"], summary["psi_max"], summary["oov_rate_max"]) == ("0.05", "0.31", "0.2")


async def test_shadow_totals_add_up_per_model_pair(cluster):
    client, prefix = cluster
    shadow = ShadowStore(client, prefix=prefix)
    hour = NOW_MS // 3_600_000
    first = PairTotals(posts=10, agreed=9, abs_delta=0.5, champion_negative=4, challenger_negative=5, champion_s=0.01, challenger_s=0.02)
    await shadow.add(hour, "3", "4", first)
    await shadow.add(hour + 1, "3", "4", PairTotals(posts=5, agreed=5, abs_delta=0.25))
    totals = (await shadow.totals(hour, hour + 1))[("3", "4")]
    assert (totals.posts, totals.agreed, totals.abs_delta, totals.challenger_negative) == (15, 14, 0.75, 5)


async def test_the_slack_bot_threads_an_incident_and_posts_each_alert_once(cluster):
    client, prefix = cluster
    opened = next_incident(None, Signal.NEGATIVE_RATE, "all", decision(Action.OPEN), MINUTE)
    first = announcement(opened, Action.OPEN)
    async with Loopback(lambda n: (200, {"ok": True, "channel": "C0ALERTS", "ts": f"1767268800.00010{n}"})) as slack:
        sink = SlackBotSink("xoxb-test-token", "#bad-buzz", client, prefix=prefix, ttl_s=600, base_url=f"{slack.url}/api/")
        await sink.send(first)
        await sink.send(first)
        await sink.send(replace(first, alert_id=f"{opened.id}.2", seq=2, action="escalated"))
    posted = slack.json()
    assert [("thread_ts" in p) for p in posted] == [False, True]
    assert posted[1]["thread_ts"] == "1767268800.000100"
