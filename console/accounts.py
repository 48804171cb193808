"""Who may use the console, kept in Redis so that every console replica sees the same
accounts, sessions, sign-in attempts and audit trail.

Key layout (``P`` is the Redis prefix as a hash tag, ``{prefix}``, so on Redis Cluster all of it shares one slot):
``P:console:user:<name>`` (hash: role, argon2
password hash, created), ``P:console:users`` (set of names), ``P:console:token:<sha256>``
(hash: name, role, created; the token itself is never stored), ``P:console:tokens`` (hash:
token name -> sha256), ``P:console:session:<id>`` (hash: user, csrf; expires with the
session), ``P:console:slack:<Slack user id>`` (the account that Slack user acts as; the
user hash keeps ``slack_user`` too), ``P:console:login:<user>|<address>`` (failed sign-ins in the current window) and
``P:console:audit`` (a stream: who, what, detail; capped)."""
from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from config.connections import shared_keyspace, transaction

ROLES = ("viewer", "responder", "admin")
AUDIT_MAX = 100_000
MAX_NAME_CHARS = 64
MIN_PASSWORD_CHARS = 12

_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,20}")

_hasher = PasswordHasher()
# Verified when the account does not exist, so that a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("no such account")


class AccountError(ValueError):
    pass


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in person (``session`` set) or an API token (``token`` set)."""

    name: str
    role: str
    session: str = ""
    csrf: str = ""
    token: str = ""

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def who(self) -> str:
        return f"token:{self.token}" if self.token else self.name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role


def check_name(name: str) -> str:
    if not name or len(name) > MAX_NAME_CHARS or not all(c.isalnum() or c in "._-@" for c in name):
        raise AccountError(f"a name is 1 to {MAX_NAME_CHARS} letters, digits or . _ - @")
    return name


def check_slack_user(slack_user: str) -> str:
    if not _SLACK_USER.fullmatch(slack_user):
        raise AccountError(f"a Slack user id looks like U0123ABCD, got {slack_user!r}")
    return slack_user


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, redis: aioredis.Redis, *, prefix: str, session_ttl_s: int = 8 * 3600,
                 login_attempts: int = 5, login_window_s: int = 900):
        self.redis = redis
        self.base = f"{shared_keyspace(prefix)}:console"
        self.session_ttl_s = session_ttl_s
        self.login_attempts = login_attempts
        self.login_window_s = login_window_s

    def _user(self, name: str) -> str:
        return f"{self.base}:user:{name}"

    def _session(self, session_id: str) -> str:
        return f"{self.base}:session:{session_id}"

    def _token(self, digest: str) -> str:
        return f"{self.base}:token:{digest}"

    # --- people ---------------------------------------------------------------------

    async def add_user(self, name: str, role: str, password: str | None) -> None:
        """Add an account or change its role; ``password`` None keeps the one it has (an
        account that never had one cannot sign in: it acts from Slack only)."""
        check_name(name)
        check_role(role)
        fields: dict = {"role": role, "created": int(time.time())}
        if password is not None:
            if len(password) < MIN_PASSWORD_CHARS:
                raise AccountError(f"a password has at least {MIN_PASSWORD_CHARS} characters")
            fields["password"] = _hasher.hash(password)
        pipe = await transaction(self.redis)
        pipe.hset(self._user(name), mapping=fields)
        pipe.sadd(f"{self.base}:users", name)
        await pipe.execute()

    async def remove_user(self, name: str) -> bool:
        slack_user = await self.redis.hget(self._user(name), "slack_user")
        pipe = await transaction(self.redis)
        pipe.delete(self._user(name))
        pipe.srem(f"{self.base}:users", name)
        if slack_user is not None:
            pipe.delete(self._slack(slack_user.decode()))
        removed = (await pipe.execute())[0]
        return bool(removed)

    def _slack(self, slack_user: str) -> str:
        return f"{self.base}:slack:{slack_user}"

    async def link_slack(self, name: str, slack_user: str) -> None:
        """Let Slack user ``slack_user`` act as account ``name`` (one account per Slack
        user; the account's earlier Slack user, if any, is unlinked)."""
        check_slack_user(slack_user)
        if await self.role_of(name) is None:
            raise AccountError(f"no console account {name!r}")
        before = await self.redis.hget(self._user(name), "slack_user")
        other = await self.redis.get(self._slack(slack_user))
        pipe = await transaction(self.redis)
        if before is not None and before.decode() != slack_user:
            pipe.delete(self._slack(before.decode()))
        if other is not None and other.decode() != name:
            pipe.hdel(self._user(other.decode()), "slack_user")
        pipe.set(self._slack(slack_user), name)
        pipe.hset(self._user(name), "slack_user", slack_user)
        await pipe.execute()

    async def slack_account(self, slack_user: str) -> Principal | None:
        """The account a Slack user acts as, with its current role (None: not linked)."""
        name = await self.redis.get(self._slack(slack_user))
        if name is None:
            return None
        role = await self.role_of(name.decode())
        return None if role is None else Principal(name.decode(), role)

    async def users(self) -> list[dict]:
        names = sorted(n.decode() for n in await self.redis.smembers(f"{self.base}:users"))
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hmget(self._user(name), "role", "created")
        rows = await pipe.execute() if names else []
        return [{"name": n, "role": r.decode(), "created": int(c)} for n, (r, c) in zip(names, rows) if r is not None]

    async def role_of(self, name: str) -> str | None:
        role = await self.redis.hget(self._user(name), "role")
        return None if role is None else role.decode()

    async def sign_in(self, name: str, password: str, address: str) -> Principal | None:
        """A new session, or None for a wrong name or password. Raises AccountError while
        the account and address are over their failed-attempt allowance."""
        limit_key = f"{self.base}:login:{name}|{address}"
        failed = int(await self.redis.get(limit_key) or 0)
        if failed >= self.login_attempts:
            wait = max(1, await self.redis.ttl(limit_key))
            raise AccountError(f"too many failed sign-ins for this account from this address: try again in {wait} s")
        role, hashed = await self.redis.hmget(self._user(name), "role", "password")
        try:
            _hasher.verify(hashed.decode() if hashed else _DUMMY_HASH, password)
            ok = hashed is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            pipe = await transaction(self.redis)
            pipe.incr(limit_key)
            pipe.expire(limit_key, self.login_window_s, nx=True)
            await pipe.execute()
            return None
        await self.redis.delete(limit_key)
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        pipe = await transaction(self.redis)
        pipe.hset(self._session(session_id), mapping={"user": name, "csrf": csrf})
        pipe.expire(self._session(session_id), self.session_ttl_s)
        await pipe.execute()
        return Principal(name, role.decode(), session=session_id, csrf=csrf)

    async def session(self, session_id: str) -> Principal | None:
        """The session's person with their current role (None: expired, signed out, or
        the account was removed since)."""
        if not session_id:
            return None
        found = await self.redis.hmget(self._session(session_id), "user", "csrf")
        if found[0] is None:
            return None
        name = found[0].decode()
        role = await self.role_of(name)
        if role is None:
            return None
        return Principal(name, role, session=session_id, csrf=found[1].decode())

    async def sign_out(self, session_id: str) -> None:
        await self.redis.delete(self._session(session_id))

    # --- API tokens -----------------------------------------------------------------

    async def create_token(self, name: str, role: str) -> str:
        """A new bearer token, returned once: only its SHA-256 is stored."""
        check_name(name)
        check_role(role)
        token = f"bbc_{secrets.token_urlsafe(32)}"
        digest = token_digest(token)
        old = await self.redis.hget(f"{self.base}:tokens", name)
        pipe = await transaction(self.redis)
        if old is not None:
            pipe.delete(self._token(old.decode()))
        pipe.hset(self._token(digest), mapping={"name": name, "role": role, "created": int(time.time())})
        pipe.hset(f"{self.base}:tokens", name, digest)
        await pipe.execute()
        return token

    async def revoke_token(self, name: str) -> bool:
        digest = await self.redis.hget(f"{self.base}:tokens", name)
        if digest is None:
            return False
        pipe = await transaction(self.redis)
        pipe.delete(self._token(digest.decode()))
        pipe.hdel(f"{self.base}:tokens", name)
        await pipe.execute()
        return True

    async def tokens(self) -> list[dict]:
        named = await self.redis.hgetall(f"{self.base}:tokens")
        pipe = self.redis.pipeline(transaction=False)
        for digest in named.values():
            pipe.hmget(self._token(digest.decode()), "role", "created")
        rows = await pipe.execute() if named else []
        found = [{"name": n.decode(), "role": r.decode(), "created": int(c)} for n, (r, c) in zip(named, rows) if r is not None]
        return sorted(found, key=lambda t: t["name"])

    async def bearer(self, token: str) -> Principal | None:
        found = await self.redis.hmget(self._token(token_digest(token)), "name", "role")
        if found[0] is None:
            return None
        return Principal(found[0].decode(), found[1].decode(), token=found[0].decode())

    # --- audit ----------------------------------------------------------------------

    async def audit(self, who: str, what: str, detail: str = "") -> None:
        await self.redis.xadd(
            f"{self.base}:audit", {"who": who, "what": what, "detail": detail[:500]}, maxlen=AUDIT_MAX, approximate=True
        )

    async def audit_trail(self, count: int = 200) -> list[dict]:
        """The newest entries first; ``at`` is epoch ms (the stream id's time)."""
        entries = await self.redis.xrevrange(f"{self.base}:audit", count=count)
        return [
            {"at": int(entry_id.decode().split("-")[0]), **{k.decode(): v.decode() for k, v in fields.items()}}
            for entry_id, fields in entries
        ]
