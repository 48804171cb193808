"""The worker's probes: ``/ready`` is 200 only with partitions of the raw topic held and
Kafka and Redis answering; every other case is a 503 naming one reason on one line."""
from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

from aiokafka.errors import KafkaTimeoutError
from faust.exceptions import ConsumerNotStarted
from faust.types import TP
from redis.exceptions import ConnectionError as RedisConnectionError

from stream import web

TOPIC = "tweets.raw"


def test_ready_with_partitions_kafka_and_redis():
    assert web.readiness(TOPIC, [3, 1]) == (200, {"ready": True, "partitions": [1, 3]})


def test_not_ready_without_partitions_of_the_raw_topic():
    assert web.readiness(TOPIC, []) == (503, {"ready": False, "reason": "no partition of tweets.raw assigned to this worker"})


def test_kafka_is_the_first_reason_then_redis():
    assert web.readiness(TOPIC, None, kafka_error="KafkaTimeoutError", redis_error="ConnectionError: refused") == (
        503, {"ready": False, "reason": "Kafka unreachable: KafkaTimeoutError"},
    )
    assert web.readiness(TOPIC, None) == (503, {"ready": False, "reason": "Kafka unreachable: the consumer has not started"})
    assert web.readiness(TOPIC, [0], redis_error="ConnectionError: refused") == (
        503, {"ready": False, "reason": "Redis unreachable: ConnectionError: refused"},
    )
    assert web.readiness(TOPIC, [], redis_error="TimeoutError") == (503, {"ready": False, "reason": "Redis unreachable: TimeoutError"})


def test_every_answer_is_one_line_of_json():
    for _status, body in (web.readiness(TOPIC, [0]), web.readiness(TOPIC, None, kafka_error="a: b")):
        assert "\n" not in json.dumps(body)


class FakeConsumer:
    def __init__(self, assignment, highwaters=None):
        self._assignment = assignment
        self._highwaters = highwaters

    def assignment(self):
        return set(self._assignment)

    async def highwaters(self, *tps):
        if isinstance(self._highwaters, BaseException):
            raise self._highwaters
        if self._highwaters == "hang":
            await asyncio.sleep(60)
        return {tp: 10 for tp in tps}


class NotStartedApp:
    @property
    def consumer(self):
        raise ConsumerNotStarted("not yet")


def test_assigned_partitions_asks_the_broker_for_the_raw_topics_end_offsets(monkeypatch):
    app = SimpleNamespace(consumer=FakeConsumer([TP(TOPIC, 2), TP(TOPIC, 0), TP("feedback", 1)]))
    assert asyncio.run(web.assigned_partitions(app, TOPIC)) == ([0, 2], None)
    app = SimpleNamespace(consumer=FakeConsumer([TP(TOPIC, 0)], highwaters=KafkaTimeoutError("no answer\nfrom broker")))
    assert asyncio.run(web.assigned_partitions(app, TOPIC)) == (None, "KafkaTimeoutError: no answer from broker")
    assert asyncio.run(web.assigned_partitions(NotStartedApp(), TOPIC)) == (None, "ConsumerNotStarted: not yet")
    monkeypatch.setattr(web, "PROBE_TIMEOUT_S", 0.05)
    app = SimpleNamespace(consumer=FakeConsumer([TP(TOPIC, 0)], highwaters="hang"))
    assert asyncio.run(web.assigned_partitions(app, TOPIC)) == (None, "TimeoutError")


def test_redis_problem_is_none_when_ping_answers(monkeypatch):
    class Redis:
        def __init__(self, outcome):
            self.outcome = outcome

        async def ping(self):
            if self.outcome == "hang":
                await asyncio.sleep(60)
            if isinstance(self.outcome, BaseException):
                raise self.outcome
            return True

    assert asyncio.run(web.redis_problem(Redis(True))) is None
    assert asyncio.run(web.redis_problem(Redis(RedisConnectionError("refused")))) == "ConnectionError: refused"
    monkeypatch.setattr(web, "PROBE_TIMEOUT_S", 0.05)
    assert asyncio.run(web.redis_problem(Redis("hang"))) == "TimeoutError"
