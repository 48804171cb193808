"""Per-scope sensitivity presets: an admin makes a scope's rule more or less eager
without restarting the workers.

A preset scales the negative-rate rule's margins (``BADBUZZ_ALERT_MARGIN``,
``_WARNING_MARGIN``, ``_CRITICAL_MARGIN``) and its p-value (``BADBUZZ_ALERT_P_VALUE``);
``balanced`` is the settings as they are, and every other part of the rule is the same
for all presets. Keys (``P`` is the Redis prefix as a hash tag, ``{prefix}``, so on Redis Cluster all of it shares one slot):
``P:alert-presets`` (hash: scope -> preset; a balanced scope has
no field) and ``P:alert-presets:version`` (incremented in the same transaction as every
change): each worker's timer reads the version and re-reads the presets when it moved."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import redis.asyncio as aioredis

from alerting.rules import RuleConfig
from config.connections import shared_keyspace, transaction

# Preset -> (margin factor, p-value factor).
SCALES = {"sensitive": (0.75, 10.0), "balanced": (1.0, 1.0), "strict": (1.5, 0.1)}
DEFAULT = "balanced"
# A sensitive preset never asks less evidence than this.
MAX_P_VALUE = 0.05


class InvalidPreset(ValueError):
    pass


def check_preset(preset: str) -> str:
    if preset not in SCALES:
        raise InvalidPreset(f"preset must be one of {', '.join(SCALES)}, got {preset!r}")
    return preset


def preset_config(cfg: RuleConfig, preset: str) -> RuleConfig:
    """The rule's settings for a scope on ``preset``."""
    margin, p = SCALES[check_preset(preset)]
    if preset == DEFAULT:
        return cfg
    return replace(
        cfg, margin=round(cfg.margin * margin, 6), warning_margin=round(cfg.warning_margin * margin, 6),
        critical_margin=round(cfg.critical_margin * margin, 6), p_value=min(cfg.p_value * p, MAX_P_VALUE),
    )


class Presets:
    def __init__(self, redis: aioredis.Redis, *, prefix: str):
        self.redis = redis
        prefix = shared_keyspace(prefix)
        self.key = f"{prefix}:alert-presets"
        self.version_key = f"{prefix}:alert-presets:version"

    async def set(self, scope: str, preset: str) -> int:
        """Put ``scope`` on ``preset``; the new version."""
        check_preset(preset)
        pipe = await transaction(self.redis)
        if preset == DEFAULT:
            pipe.hdel(self.key, scope)
        else:
            pipe.hset(self.key, scope, preset)
        pipe.incr(self.version_key)
        return int((await pipe.execute())[-1])

    async def version(self) -> int:
        return int(await self.redis.get(self.version_key) or 0)

    async def current(self) -> tuple[int, dict[str, str]]:
        """(version, scope -> preset for every scope not balanced), read together."""
        pipe = await transaction(self.redis)
        pipe.get(self.version_key)
        pipe.hgetall(self.key)
        version, found = await pipe.execute()
        return int(version or 0), {k.decode(): v.decode() for k, v in found.items() if v.decode() in SCALES}


class ScopeConfigs:
    """Each scope's rule settings: the base ones on its preset, refreshed when the
    presets' version moves."""

    def __init__(self, base: RuleConfig, presets: Presets | None = None, *, on_change: Callable[[dict[str, str]], None] | None = None):
        self.base = base
        self.presets = presets
        self.on_change = on_change
        self.version = -1
        self.chosen: dict[str, str] = {}
        self._configs: dict[str, RuleConfig] = {}

    def __call__(self, scope: str) -> RuleConfig:
        preset = self.chosen.get(scope, DEFAULT)
        if preset not in self._configs:
            self._configs[preset] = preset_config(self.base, preset)
        return self._configs[preset]

    async def refresh(self) -> bool:
        """Re-read the presets if their version moved; whether it did."""
        if self.presets is None or await self.presets.version() == self.version:
            return False
        self.version, self.chosen = await self.presets.current()
        if self.on_change is not None:
            self.on_change(self.chosen)
        return True
