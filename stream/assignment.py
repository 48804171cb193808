"""What a worker does when the consumer group hands it partitions of the raw topic:
resume each where Redis says it was counted, and take the scopes they own.

Resuming: the count script stores each partition's last counted offset with the counts
it produced (``counting.counters``), so Redis, not Kafka's committed offset, says what
has been counted. On assignment, Kafka's committed offset of each partition is set to
the one after Redis's before Faust seeks to it: a worker killed between counting and
committing does not read the counted messages again, and a Redis that lost its last
writes (a failover before replication caught up) has those messages read and counted
again instead of lost. Were Redis unreachable then, the committed offsets stay as they
are: the count script still skips what it has counted.

Owning: each scope is evaluated by the worker assigned its owner partition
(``alerting.escalation.owner_partition``); a rebalance moves scopes with partitions."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import faust
from faust.types import TP

from alerting.escalation import owner_partition
from config.settings import Settings
from config.topics import partition_count
from counting.counters import Counters
from stream.retry import error_class

log = logging.getLogger(__name__)

# A rebalance waits for this handler: keep it inside the session timeout (10 s by default).
ASSIGN_TIMEOUT_S = 8.0


async def resume_offsets(counters: Counters, topic: str, assigned: Iterable[TP]) -> dict[TP, int]:
    """The offset to resume each assigned partition of ``topic`` at, for those Redis has
    counted anything of."""
    tps = sorted((tp for tp in assigned if tp.topic == topic), key=lambda tp: tp.partition)
    if not tps:
        return {}
    counted = await counters.counted_offsets([tp.partition for tp in tps])
    return {tp: counted[tp.partition] + 1 for tp in tps if tp.partition in counted}


class ScopeOwnership:
    """The scopes this worker evaluates: those whose owner partition it is assigned."""

    def __init__(self, topic: str):
        self.topic = topic
        self.partitions: frozenset[int] = frozenset()
        self.partition_count = 0

    def assign(self, assigned: Iterable[TP], partition_count: int) -> None:
        """``partition_count``: the topic's, as Kafka says. Guessed from the assignment,
        workers would disagree on owners and a scope could have none."""
        self.partitions = frozenset(tp.partition for tp in assigned if tp.topic == self.topic)
        self.partition_count = partition_count

    def revoke(self) -> None:
        self.partitions = frozenset()

    def owns(self, scope: str) -> bool:
        return bool(self.partitions) and self.partition_count > 0 and owner_partition(scope, self.partition_count) in self.partitions


def register(app: faust.App, settings: Settings, counters: Counters, ownership: ScopeOwnership) -> None:
    topic = settings.topic_raw

    @app.on_partitions_revoked.connect
    async def give_up_scopes(sender, revoked, **kwargs) -> None:
        ownership.revoke()

    async def align(assigned: Iterable[TP]) -> dict[TP, int]:
        offsets = await resume_offsets(counters, topic, assigned)
        if offsets:
            # Faust's own commit call (its public one commits what it acknowledged).
            await app.consumer._commit(offsets)
        return offsets

    @app.on_partitions_assigned.connect
    async def take_scopes(sender, assigned, **kwargs) -> None:
        # The consumer's metadata snapshot, when it has the topic yet; else the brokers.
        count = app.consumer.topic_partitions(topic)
        if not count:
            try:
                count = await asyncio.wait_for(partition_count(settings, topic), ASSIGN_TIMEOUT_S)
            except Exception as exc:
                log.warning("partitions of %s unknown (%s): evaluating no scope until the next assignment", topic, error_class(exc))
                ownership.revoke()
                return
        ownership.assign(assigned, count)
        log.info("evaluating the scopes of partitions %s of %s's %d", sorted(ownership.partitions), topic, count)

    # Faust sends this once the rebalance's recovery is done and waits for it before it
    # resumes the partitions and seeks them to their committed offsets (on assignment
    # itself, its recovery may already have sought them).
    @app.on_rebalance_complete.connect
    async def resume_where_counted(sender, **kwargs) -> None:
        try:
            offsets = await asyncio.wait_for(align(app.consumer.assignment()), ASSIGN_TIMEOUT_S)
        except Exception as exc:
            log.warning("could not align committed offsets with the counters (%s): resuming at Kafka's", error_class(exc))
            return
        if offsets:
            log.info("resuming %s", ", ".join(f"{tp.topic}[{tp.partition}]@{offset}" for tp, offset in offsets.items()))
