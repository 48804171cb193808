"""The watch terms, edited by admins in the console and followed by running workers.

Until an admin first saves a list, the terms are ``BADBUZZ_WATCH_TERMS``; from then on
Redis holds them: ``{P}:watch-terms`` (a JSON list) and ``{P}:watch-terms:version``
(incremented with every change, by the same script). A worker reads the version on a
short timer and re-reads the terms when it moved; it counts a new term from its next
batch (posts counted before are not counted again for it) and stops counting a removed
one, whose incidents stay in the history."""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis

from config.connections import shared_keyspace
from counting.terms import ScopeMatcher
from models.preprocess import preprocess

# Each term is a Prometheus label value and a scope every worker reads on every
# evaluation: the cap keeps both bounded.
MAX_TERMS = 50
MAX_TERM_CHARS = 40
# How often a worker reads the version (one GET).
POLL_S = 5.0

# Replace the list only if nobody changed it since it was read (KEYS: terms, version;
# ARGV: the version read, the new list as JSON). The new version, or -1 on a conflict.
_REPLACE = """
local version = tonumber(redis.call('GET', KEYS[2]) or '0')
if version ~= tonumber(ARGV[1]) then return -1 end
redis.call('SET', KEYS[1], ARGV[2])
return redis.call('INCR', KEYS[2])
"""


class InvalidTerm(ValueError):
    pass


class TermsChanged(RuntimeError):
    """Someone else saved the terms between our read and our write."""


def normalise(term: str) -> str:
    """A term as posts are matched: preprocessed like them (lower case, NFKC, one space
    between words)."""
    return preprocess(term)


def check_term(term: str) -> str:
    """The normalised term, or ``InvalidTerm`` saying what is wrong with it."""
    clean = normalise(term)
    if not clean:
        raise InvalidTerm("a watch term cannot be empty")
    if len(clean) > MAX_TERM_CHARS:
        raise InvalidTerm(f"watch term {clean[:MAX_TERM_CHARS]!r}... has {len(clean)} characters, at most {MAX_TERM_CHARS}")
    if not clean.isprintable() or any(c in clean for c in ",<>"):
        raise InvalidTerm(f"watch term {clean!r} may not hold commas, angle brackets, links, @handles or control characters")
    if not any(c.isalnum() for c in clean):
        raise InvalidTerm(f"watch term {clean!r} needs at least one letter or digit")
    return clean


def check_terms(terms: Sequence[str]) -> list[str]:
    """The normalised list, or ``InvalidTerm`` for the first problem found."""
    checked: list[str] = []
    for term in terms:
        clean = check_term(term)
        if clean in checked:
            raise InvalidTerm(f"{clean!r} is already watched")
        checked.append(clean)
    if len(checked) > MAX_TERMS:
        raise InvalidTerm(f"at most {MAX_TERMS} watch terms, got {len(checked)}")
    return checked


class WatchTerms:
    def __init__(self, redis: aioredis.Redis, *, prefix: str, default: Sequence[str]):
        self.redis = redis
        self.key = f"{shared_keyspace(prefix)}:watch-terms"
        self.version_key = f"{self.key}:version"
        # The settings' list as a worker would match it (ScopeMatcher's spelling).
        self.default = list(ScopeMatcher(default).terms)
        self._replace = redis.register_script(_REPLACE)

    async def version(self) -> int:
        return int(await self.redis.get(self.version_key) or 0)

    async def current(self) -> tuple[int, list[str]]:
        """(version, terms): version 0 and the settings' terms until an admin saved some."""
        version, stored = await self.redis.mget([self.version_key, self.key])
        return int(version or 0), self.default if stored is None else json.loads(stored)

    async def replace(self, terms: Sequence[str], *, expected: int) -> int:
        """Save ``terms`` if the version is still ``expected``; the new version."""
        checked = check_terms(terms)
        version = int(await self._replace(keys=[self.key, self.version_key], args=[expected, json.dumps(checked)]))
        if version < 0:
            raise TermsChanged("the watch terms changed meanwhile: reload them and try again")
        return version

    async def add(self, term: str) -> tuple[int, str]:
        """(new version, the term as saved)."""
        version, terms = await self.current()
        clean = check_term(term)
        if clean in terms:
            raise InvalidTerm(f"{clean!r} is already watched")
        return await self.replace([*terms, clean], expected=version), clean

    async def remove(self, term: str) -> tuple[int, str]:
        version, terms = await self.current()
        clean = normalise(term)
        if clean not in terms:
            raise InvalidTerm(f"{clean!r} is not a watch term")
        return await self.replace([t for t in terms if t != clean], expected=version), clean


class FollowedTerms:
    """A process's view of the watch terms: the matcher and scopes of the last version
    read, swapped whole when the version moves (a batch matching its posts holds one
    matcher throughout)."""

    def __init__(self, store: WatchTerms, *, on_change: Callable[[ScopeMatcher], None] | None = None):
        self.store = store
        self.on_change = on_change
        self.version = -1
        self.matcher = ScopeMatcher(store.default)

    @property
    def scopes(self) -> list[str]:
        return self.matcher.scopes

    async def refresh(self) -> bool:
        """Re-read the terms if their version moved; whether the matcher changed."""
        if self.version >= 0 and await self.store.version() == self.version:
            return False
        version, terms = await self.store.current()
        changed = list(self.matcher.terms) != terms
        self.version = version
        if changed:
            self.matcher = ScopeMatcher(terms)
            if self.on_change is not None:
                self.on_change(self.matcher)
        return changed
