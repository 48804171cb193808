"""The incident history is written by the same atomic commit that announces a change:
an announcement the CAS refuses leaves no trace in it, and every accepted one is kept
(oldest first) after the store itself moved on to a newer incident of the scope."""
from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from alerting.alert import Alert
from alerting.incidents import IncidentHistory, IncidentStore, next_incident
from alerting.outbox import Outbox, OutboxConfig
from alerting.rules import Action, Assessment, Baseline, Decision, Severity, Signal
from benchmarks.keys import delete_prefix
from config.connections import shared_keyspace
from tests.configs import DEFAULTS

pytestmark = pytest.mark.integration

TTL_S = 6 * 3600


def decision(action: Action, severity: Severity = Severity.WARNING) -> Decision:
    return Decision(action, severity, Baseline(0.2, 10.0, "trailing", 500), Assessment(True, action is Action.RESOLVE, severity, 1e-9, 1.0))


def announcement(incident, action: Action) -> Alert:
    return Alert(
        alert_id=incident.alert_id(), incident_id=incident.id, seq=incident.seq, signal=incident.signal.value,
        action=action.value, severity=incident.severity.value, scope=incident.scope,
        window_start="2026-01-01T11:46:00Z", window_end="2026-01-01T12:01:00Z", window_minutes=15,
    )


@pytest.fixture
async def redis(live_services):
    client = aioredis.Redis.from_url(live_services[1])
    prefix = f"test:history:{uuid.uuid4().hex[:10]}"
    yield client, prefix
    await delete_prefix(client, prefix)
    await client.aclose()


async def test_every_accepted_announcement_is_kept_and_a_refused_one_is_not(redis):
    client, prefix = redis
    store = IncidentStore(client, prefix=prefix, ttl_s=TTL_S, outbox=Outbox(client, prefix=prefix, sinks=["console"], cfg=OutboxConfig.from_settings(DEFAULTS)))
    history = IncidentHistory(client, prefix=prefix)
    minute = 29_000_000

    first = next_incident(None, Signal.NEGATIVE_RATE, "all", decision(Action.OPEN), minute)
    assert await store.commit(None, first, announcement(first, Action.OPEN), now_ms=minute * 60_000)
    # A second worker deciding the same opening loses the CAS: nothing of it is recorded.
    rival = next_incident(None, Signal.NEGATIVE_RATE, "all", decision(Action.OPEN), minute)
    assert not await store.commit(None, rival, announcement(rival, Action.OPEN), now_ms=minute * 60_000)
    resolved = next_incident(first, Signal.NEGATIVE_RATE, "all", decision(Action.RESOLVE), minute + 20)
    assert await store.commit(first, resolved, announcement(resolved, Action.RESOLVE), now_ms=(minute + 20) * 60_000)
    # After the cool-down a fresh episode replaces the incident in the store.
    second = next_incident(resolved, Signal.NEGATIVE_RATE, "all", decision(Action.OPEN, Severity.CRITICAL), minute + 90)
    assert await store.commit(resolved, second, announcement(second, Action.OPEN), now_ms=(minute + 90) * 60_000)

    assert (await store.get("all")).id == second.id
    assert await history.ids() == [second.id, first.id]
    assert await history.ids(since_ms=(minute + 21) * 60_000) == [second.id]
    kept = await history.alerts([first.id, second.id, rival.id])
    assert [(a.alert_id, a.action) for a in kept[first.id]] == [(f"{first.id}.1", "opened"), (f"{first.id}.2", "resolved")]
    assert [(a.alert_id, a.severity) for a in kept[second.id]] == [(f"{second.id}.1", "critical")]
    assert kept[rival.id] == []
    assert 0 < await client.ttl(f"{shared_keyspace(prefix)}:incident-log:{first.id}") <= TTL_S


async def test_incidents_quiet_for_longer_than_the_retention_leave_the_index(redis):
    client, prefix = redis
    store = IncidentStore(client, prefix=prefix, ttl_s=3600, outbox=Outbox(client, prefix=prefix, sinks=["console"], cfg=OutboxConfig.from_settings(DEFAULTS)))
    history = IncidentHistory(client, prefix=prefix)
    minute = 29_000_000
    old = next_incident(None, Signal.VOLUME, "all", decision(Action.OPEN), minute)
    assert await store.commit(None, old, announcement(old, Action.OPEN), now_ms=minute * 60_000)
    new = next_incident(None, Signal.NEGATIVE_RATE, "all", decision(Action.OPEN), minute + 61)
    assert await store.commit(None, new, announcement(new, Action.OPEN), now_ms=(minute + 61) * 60_000)
    assert await history.ids() == [new.id]
