"""The console's web service (FastAPI on uvicorn): pages for people and the HTTP API
under ``/api/v1``. It keeps nothing of its own: accounts, sessions and the audit trail
are in Redis (``console.accounts``), numbers and incidents come from the worker's Redis
keys, models from MLflow, and feedback goes to the feedback topic, so any number of
consoles can stand behind a load balancer."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, quote

from aiokafka.errors import KafkaError
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel
from redis.exceptions import RedisError

from alerting.actions import ActionError, ActionRequest, IncidentActions
from alerting.alert import iso
from alerting.feedback import InvalidFeedback, make_feedback, send_feedback
from alerting.incidents import IncidentHistory, IncidentStore
from alerting.outbox import Outbox, OutboxConfig
from alerting.presets import SCALES, InvalidPreset, Presets, preset_config
from alerting.quality import AlertQuality, read_alert_quality
from alerting.rules import RuleConfig
from alerting.runtime import hour_ttl_s, sink_names
from alerting.silences import InvalidSilence, Silences
from alerting.watch_terms import MAX_TERM_CHARS, MAX_TERMS, FollowedTerms, InvalidTerm, TermsChanged, WatchTerms
from config.connections import redis_client
from config.settings import Settings
from console.accounts import AccountError, Accounts, Principal
from console.quality import exposition
from console.scoring import Models, describe, explain
from console.slack import MAX_BODY_BYTES, BadPayload, answer, parse, post_back, signed
from console.views import BadQuery, IncidentFilter, Reader, parse_since
from counting.counters import Counters
from models.bundle import ModelError
from stream.dashboard import dashboard_page, parse_minutes, parse_scope

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).with_name("templates")
SESSION_COOKIE = "bb_session"
LOGIN_CSRF_COOKIE = "bb_login_csrf"
DEFAULT_MINUTES = 180
FEEDBACK_LABELS = {"negative": "negative", "not_negative": "positive", "positive": "positive"}


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message


class SignInNeeded(Exception):
    pass


class Refused(Exception):
    """A page the signed-in person's role does not open."""

    def __init__(self, message: str):
        self.message = message


class ScoreRequest(BaseModel):
    texts: list[str]


class ActionBody(BaseModel):
    action: Literal["acknowledge", "snooze", "resolve", "false_alarm", "note"]
    minutes: float | None = None
    reason: str = ""
    text: str = ""


class SilenceBody(BaseModel):
    scope: str | None = None
    signal: str | None = None
    severity: str | None = None
    # Start now unless ``starts`` (epoch ms or ISO 8601) says later; end after ``minutes`` or at ``ends``.
    starts: str | None = None
    ends: str | None = None
    minutes: float | None = None
    reason: str


class PresetBody(BaseModel):
    preset: str


class TermBody(BaseModel):
    term: str


class FeedbackRequest(BaseModel):
    post_id: str
    label: Literal["negative", "not_negative", "positive"]
    comment: str = ""


class Console:
    """The per-process clients, made inside the server's event loop."""

    def __init__(self, settings: Settings):
        s = settings
        self.settings = s
        self.redis = redis_client(s)
        self.accounts = accounts_for(s, self.redis)
        counters = Counters(self.redis, prefix=s.redis_prefix, ttl_s=s.counter_ttl_s, hour_ttl_s=hour_ttl_s(s))
        self.silences = Silences(self.redis, prefix=s.redis_prefix)
        # Responders' actions are announced to the workers' sinks through the shared outbox.
        outbox = Outbox(self.redis, prefix=s.redis_prefix, sinks=sink_names(s), cfg=OutboxConfig.from_settings(s))
        incidents = IncidentStore(self.redis, prefix=s.redis_prefix, ttl_s=s.counter_ttl_s, outbox=outbox, silences=self.silences)
        history = IncidentHistory(self.redis, prefix=s.redis_prefix)
        cfg = RuleConfig.from_settings(s)
        # Scope lists follow the watch terms admins edit (``fresh_scopes`` reads them again).
        self.watch_terms = FollowedTerms(WatchTerms(self.redis, prefix=s.redis_prefix, default=s.watch_terms))
        self.reader = Reader(
            counters, incidents, history, cfg, self.watch_terms.scopes,
            silences=self.silences, future_tolerance_ms=s.future_tolerance_s * 1000,
        )
        self.watch_terms.on_change = lambda matcher: setattr(self.reader, "scopes", matcher.scopes)
        self.actions = IncidentActions(incidents, history, counters, cfg)
        self.history = history
        self.presets = Presets(self.redis, prefix=s.redis_prefix)
        self.rule = cfg
        self.models = Models(s)
        self.pages = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
        self.pages.filters["pct"] = lambda v: "-" if v is None else f"{v:.1%}"
        self.pages.filters["iso"] = iso


def accounts_for(settings: Settings, redis) -> Accounts:
    s = settings
    return Accounts(redis, prefix=s.redis_prefix, session_ttl_s=s.console_session_ttl_s,
                    login_attempts=s.console_login_attempts, login_window_s=s.console_login_window_s)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a, b)


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _local_path(target: str | None) -> str:
    """Only a path on this site may follow a sign-in (never another host)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/live"


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.console = Console(settings)
        try:
            yield
        finally:
            await app.state.console.redis.aclose()

    app = FastAPI(
        title="badbuzz console", version="1", lifespan=lifespan,
        openapi_url="/api/v1/openapi.json", docs_url=None, redoc_url=None,
    )

    def console(request: Request) -> Console:
        return request.app.state.console

    # --- who is asking ---------------------------------------------------------------

    async def principal(request: Request) -> Principal | None:
        accounts = console(request).accounts
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None
            return await accounts.bearer(token.strip())
        return await accounts.session(request.cookies.get(SESSION_COOKIE, ""))

    async def api_user(request: Request, role: str) -> Principal:
        who = await principal(request)
        if who is None:
            raise ApiError(401, "sign in, or send a valid API token as 'Authorization: Bearer <token>'")
        if who.session and request.method not in ("GET", "HEAD") and not _same(request.headers.get("x-csrf-token"), who.csrf):
            raise ApiError(403, "a signed-in browser must send its CSRF token in the X-CSRF-Token header")
        if not who.may(role):
            await console(request).accounts.audit(who.who, "refused", f"{request.method} {request.url.path} needs {role}")
            raise ApiError(403, f"this needs the {role} role; {who.who} is a {who.role}")
        return who

    async def page_user(request: Request, role: str = "viewer", form: dict[str, str] | None = None) -> Principal:
        who = await principal(request)
        if who is None or not who.session:
            raise SignInNeeded()
        if form is not None and not _same(form.get("csrf"), who.csrf):
            await console(request).accounts.audit(who.who, "refused", f"{request.url.path}: bad CSRF token")
            raise Refused("this form is stale or was not sent by the console (bad CSRF token): reload the page and try again")
        if not who.may(role):
            await console(request).accounts.audit(who.who, "refused", f"{request.method} {request.url.path} needs {role}")
            raise Refused(f"this needs the {role} role; you are a {who.role}")
        return who

    def render(request: Request, template: str, who: Principal | None, status: int = 200, **context) -> HTMLResponse:
        page = console(request).pages.get_template(template).render(who=who, path=request.url.path, **context)
        return HTMLResponse(page, status_code=status)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"error": f"{where or 'body'}: {first.get('msg', 'invalid request')}"}, status_code=422)

    @app.exception_handler(SignInNeeded)
    async def sign_in_needed(request: Request, exc: SignInNeeded):
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused):
        return render(request, "refused.html", await principal(request), status=403, message=exc.message)

    @app.exception_handler(RedisError)
    async def redis_down(request: Request, exc: RedisError):
        log.warning("Redis unavailable: %s", exc)
        return JSONResponse({"error": "Redis is unreachable; try again shortly"}, status_code=503)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return response

    # --- shared work -----------------------------------------------------------------

    async def score(request: Request, texts: list[str]) -> dict:
        s = settings
        if not texts:
            raise ApiError(422, "texts: give at least one text")
        if len(texts) > s.console_max_batch:
            raise ApiError(413, f"texts: {len(texts)} texts, at most {s.console_max_batch} per request (BADBUZZ_CONSOLE_MAX_BATCH)")
        for i, text in enumerate(texts):
            if len(text) > s.max_text_chars:
                raise ApiError(422, f"texts[{i}]: {len(text)} characters, at most {s.max_text_chars} (BADBUZZ_MAX_TEXT_CHARS)")
        try:
            models = await asyncio.to_thread(console(request).models.current)
        except ModelError as exc:
            raise ApiError(503, f"no model to score with: {exc}") from None
        explained = {alias: await asyncio.to_thread(explain, scorer, texts, names) for alias, (scorer, names) in models.items()}
        return {
            "models": {alias: describe(scorer) for alias, (scorer, _) in models.items()},
            "results": [
                {"index": i, **{alias: explained[alias][i].to_dict() for alias in explained}} for i in range(len(texts))
            ],
        }

    async def feedback(request: Request, who: Principal, post_id: str, label: str, comment: str) -> dict:
        try:
            record = make_feedback(post_id, FEEDBACK_LABELS[label], comment, now_ms=int(time.time() * 1000), source=f"console:{who.who}")
        except InvalidFeedback as exc:
            raise ApiError(422, str(exc)) from None
        try:
            await send_feedback(settings, record)
        except (KafkaError, OSError) as exc:
            raise ApiError(503, f"feedback not sent: Kafka at {settings.kafka_bootstrap} did not take it ({exc})") from None
        await console(request).accounts.audit(who.who, "feedback", f"post {record.post_id}: {record.label}")
        return {"post_id": record.post_id, "label": record.label, "comment": record.comment, "topic": settings.topic_feedback}

    async def act(request: Request, who: Principal, incident_id: str, body: ActionRequest) -> dict:
        try:
            alert = await console(request).actions.apply(incident_id, body, actor=who.who)
        except ActionError as exc:
            raise ApiError(exc.status, exc.message) from None
        await console(request).accounts.audit(who.who, f"incident {alert.action}", f"{incident_id}" + (f": {alert.note}" if alert.note else ""))
        return {"incident_id": incident_id, "action": alert.action, "alert_id": alert.alert_id, "seq": alert.seq, "muted_by": alert.muted_by or None}

    async def silence(request: Request, who: Principal, body: SilenceBody) -> dict:
        now_ms = int(time.time() * 1000)
        try:
            starts = parse_since(body.starts) or now_ms
            if body.ends:
                ends = parse_since(body.ends)
            elif body.minutes is not None and body.minutes > 0:
                ends = starts + int(body.minutes * 60_000)
            else:
                raise ApiError(422, "say how long: minutes (more than 0) or ends")
            made = await console(request).silences.create(
                scope=body.scope, signal=body.signal, severity=body.severity, starts_ms=starts, ends_ms=ends, author=who.who, reason=body.reason, now_ms=now_ms,
            )
        except (BadQuery, InvalidSilence) as exc:
            raise ApiError(422, str(exc)) from None
        await console(request).accounts.audit(who.who, "silence created", f"{made.id}: {made.matchers} until {iso(made.ends_ms)}: {made.reason}")
        return made.to_dict()

    async def expire_silence(request: Request, who: Principal, silence_id: str) -> dict:
        ended = await console(request).silences.expire(silence_id, now_ms=int(time.time() * 1000))
        if ended is None:
            raise ApiError(404, f"no current silence {silence_id!r} (it ended, or never was)")
        await console(request).accounts.audit(who.who, "silence expired", f"{silence_id}: {ended.matchers}")
        return ended.to_dict()

    async def fresh_scopes(request: Request) -> list[str]:
        """The scopes of the watch terms as saved now (one read while they stay the same)."""
        await console(request).watch_terms.refresh()
        return console(request).reader.scopes

    async def chart_query(request: Request) -> tuple[str, int]:
        scopes = await fresh_scopes(request)
        try:
            return (
                parse_scope(request.query_params.get("scope"), scopes),
                parse_minutes(request.query_params.get("minutes"), default=DEFAULT_MINUTES, retention_min=settings.counter_ttl_s // 60),
            )
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None

    def incident_filter(request: Request) -> IncidentFilter:
        try:
            return IncidentFilter.parse(request.query_params)
        except BadQuery as exc:
            raise ApiError(400, str(exc)) from None

    # --- API -------------------------------------------------------------------------

    @app.post("/api/v1/score", tags=["api"], summary="P(negative), label and top terms per text, for the champion and the challenger")
    async def api_score(request: Request, body: ScoreRequest):
        who = await api_user(request, "viewer")
        result = await score(request, body.texts)
        await console(request).accounts.audit(who.who, "score", f"{len(body.texts)} texts")
        return result

    @app.post("/api/v1/feedback", tags=["api"], summary="Say what a post really was (responder)")
    async def api_feedback(request: Request, body: FeedbackRequest):
        who = await api_user(request, "responder")
        return await feedback(request, who, body.post_id, body.label, body.comment)

    @app.get("/api/v1/incidents", tags=["api"], summary="Open and past incidents; filter by scope, signal, severity, state, since")
    async def api_incidents(request: Request):
        await api_user(request, "viewer")
        return {"incidents": await console(request).reader.incident_list(incident_filter(request))}

    @app.get("/api/v1/incidents/{incident_id}", tags=["api"], summary="One incident: its announcements, drivers and example posts")
    async def api_incident(request: Request, incident_id: str):
        await api_user(request, "viewer")
        found = await console(request).reader.incident(incident_id)
        if found is None:
            raise ApiError(404, f"no incident {incident_id!r} in the history (unknown, or older than BADBUZZ_COUNTER_TTL_S)")
        return found

    @app.post("/api/v1/incidents/{incident_id}/actions", tags=["api"], summary="Acknowledge, snooze, resolve, mark a false alarm or add a note (responder)")
    async def api_incident_action(request: Request, incident_id: str, body: ActionBody):
        who = await api_user(request, "responder")
        return await act(request, who, incident_id, ActionRequest(body.action, body.minutes, body.reason, body.text))

    @app.get("/api/v1/silences", tags=["api"], summary="Silences not ended yet")
    async def api_silences(request: Request):
        await api_user(request, "viewer")
        return {"silences": [s.to_dict() for s in await console(request).silences.current(now_ms=int(time.time() * 1000))]}

    @app.post("/api/v1/silences", tags=["api"], summary="Mute the announcements of matching incidents for a while (responder)")
    async def api_silence(request: Request, body: SilenceBody):
        return await silence(request, await api_user(request, "responder"), body)

    @app.post("/api/v1/silences/{silence_id}/expire", tags=["api"], summary="Lift a silence now (responder)")
    async def api_expire_silence(request: Request, silence_id: str):
        return await expire_silence(request, await api_user(request, "responder"), silence_id)

    @app.get("/api/v1/windows", tags=["api"], summary="The live chart's numbers (as the worker's /api/windows)")
    async def api_windows(request: Request):
        await api_user(request, "viewer")
        scope, minutes = await chart_query(request)
        return await console(request).reader.windows(scope, minutes, console(request).models.display())

    async def quality(request: Request) -> AlertQuality:
        """The figures over everything the incident history holds (BADBUZZ_COUNTER_TTL_S)."""
        now_ms = int(time.time() * 1000)
        return await read_alert_quality(console(request).history, since_ms=now_ms - settings.counter_ttl_s * 1000, until_ms=now_ms)

    @app.get("/api/v1/quality", tags=["api"], summary="Alert quality: time to acknowledge, false alarms per signal and scope, incidents a week, silenced")
    async def api_quality(request: Request):
        await api_user(request, "viewer")
        q = await quality(request)
        return {"since": iso(q.since_ms), "until": iso(q.until_ms), **q.to_dict()}

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request):
        return Response(exposition(await quality(request)), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/quality", include_in_schema=False)
    async def quality_page(request: Request):
        who = await page_user(request)
        q = await quality(request)
        return render(request, "quality.html", who, q=q.to_dict(), since=iso(q.since_ms), until=iso(q.until_ms))

    async def presets_now(request: Request) -> dict:
        c = console(request)
        version, chosen = await c.presets.current()
        mapping = {
            name: {k: getattr(preset_config(c.rule, name), k) for k in ("margin", "warning_margin", "critical_margin", "p_value")} for name in SCALES
        }
        return {"version": version, "scopes": {scope: chosen.get(scope, "balanced") for scope in await fresh_scopes(request)}, "presets": mapping}

    async def set_preset(request: Request, who: Principal, scope: str, preset: str) -> dict:
        scopes = await fresh_scopes(request)
        if scope not in scopes:
            raise ApiError(404, f"no scope {scope!r}: one of {', '.join(scopes)}")
        try:
            version = await console(request).presets.set(scope, preset)
        except InvalidPreset as exc:
            raise ApiError(422, str(exc)) from None
        await console(request).accounts.audit(who.who, "preset changed", f"{scope}: {preset} (version {version})")
        return {"scope": scope, "preset": preset, "version": version}

    @app.get("/api/v1/presets", tags=["api"], summary="Each scope's sensitivity preset, and what each preset sets")
    async def api_presets(request: Request):
        await api_user(request, "viewer")
        return await presets_now(request)

    @app.put("/api/v1/presets/{scope}", tags=["api"], summary="Put a scope on a sensitivity preset (admin); workers follow within a timer period")
    async def api_set_preset(request: Request, scope: str, body: PresetBody):
        return await set_preset(request, await api_user(request, "admin"), scope, body.preset)

    @app.get("/admin/presets", include_in_schema=False)
    async def presets_page(request: Request):
        return await presets_view(request, await page_user(request, "admin"))

    async def presets_view(request: Request, who: Principal, *, status: int = 200, message: str = "", failed: bool = False):
        return render(request, "presets.html", who, status=status, now=await presets_now(request), message=message, failed=failed)

    @app.post("/admin/presets", include_in_schema=False)
    async def presets_post(request: Request):
        form = await _form(request)
        who = await page_user(request, "admin", form=form)
        try:
            done = await set_preset(request, who, form.get("scope", ""), form.get("preset", ""))
        except ApiError as exc:
            return await presets_view(request, who, status=exc.status, message=exc.message, failed=True)
        return await presets_view(request, who, message=f"{done['scope']} is {done['preset']} (version {done['version']}); workers follow within a minute.")

    async def terms_now(request: Request) -> dict:
        version, terms = await console(request).watch_terms.store.current()
        return {"version": version, "terms": terms, "max_terms": MAX_TERMS, "max_term_chars": MAX_TERM_CHARS}

    async def change_terms(request: Request, who: Principal, action: Literal["add", "remove"], term: str) -> dict:
        store = console(request).watch_terms.store
        try:
            version, clean = await (store.add(term) if action == "add" else store.remove(term))
        except InvalidTerm as exc:
            raise ApiError(422, str(exc)) from None
        except TermsChanged as exc:
            raise ApiError(409, str(exc)) from None
        what = "watch term added" if action == "add" else "watch term removed"
        await console(request).accounts.audit(who.who, what, f"{clean} (version {version})")
        return {"term": clean, "scope": f"term:{clean}", "action": action, **await terms_now(request)}

    @app.get("/api/v1/watch-terms", tags=["api"], summary="The watch terms workers count a scope for")
    async def api_watch_terms(request: Request):
        await api_user(request, "viewer")
        return await terms_now(request)

    @app.post("/api/v1/watch-terms", tags=["api"], summary="Watch a new term (admin); workers count it from their next batch, within seconds")
    async def api_add_watch_term(request: Request, body: TermBody):
        return await change_terms(request, await api_user(request, "admin"), "add", body.term)

    @app.delete("/api/v1/watch-terms/{term}", tags=["api"], summary="Stop watching a term (admin); its incidents stay in the history")
    async def api_remove_watch_term(request: Request, term: str):
        return await change_terms(request, await api_user(request, "admin"), "remove", term)

    async def terms_view(request: Request, who: Principal, *, status: int = 200, message: str = "", failed: bool = False, typed: str = ""):
        return render(request, "watch_terms.html", who, status=status, now=await terms_now(request), message=message, failed=failed, typed=typed)

    @app.get("/admin/watch-terms", include_in_schema=False)
    async def terms_page(request: Request):
        return await terms_view(request, await page_user(request, "admin"))

    @app.post("/admin/watch-terms", include_in_schema=False)
    async def terms_post(request: Request):
        form = await _form(request)
        who = await page_user(request, "admin", form=form)
        action, term = form.get("action", ""), form.get("term", "")
        if action not in ("add", "remove"):
            return await terms_view(request, who, status=422, message="Choose add or remove.", failed=True)
        try:
            done = await change_terms(request, who, action, term)
        except ApiError as exc:
            return await terms_view(request, who, status=exc.status, message=exc.message, failed=True, typed=term if action == "add" else "")
        said = "now watched: workers count it from their next batch" if action == "add" else "no longer watched: its incidents stay in the history"
        return await terms_view(request, who, message=f"{done['term']!r} is {said} (version {done['version']}).")

    @app.post("/slack/actions", include_in_schema=False)
    async def slack_actions(request: Request, background: BackgroundTasks):
        secret = settings.slack_signing_secret
        if secret is None:
            return JSONResponse({"error": "Slack buttons are off: SLACK_SIGNING_SECRET is not set"}, status_code=503)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"error": "request too large"}, status_code=413)
        headers = request.headers
        if not signed(secret.get_secret_value(), headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature"), body, now_s=time.time()):
            log.warning("Slack action refused: bad or stale signature (%s)", _address(request))
            return JSONResponse({"error": "bad or stale Slack signature"}, status_code=401)
        try:
            click = parse(body)
        except BadPayload as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        c = console(request)
        reply = await answer(click, c.accounts, c.actions, c.history)
        background.add_task(post_back, click.response_url, reply, timeout_s=settings.outbox_send_timeout_s)
        return reply

    # --- pages -----------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def home():
        return RedirectResponse("/live", status_code=303)

    @app.get("/healthz", include_in_schema=False)
    async def health(request: Request):
        await console(request).redis.ping()
        return {"ok": True}

    @app.get("/login", include_in_schema=False)
    async def login_page(request: Request):
        return login_form(request)

    def login_form(request: Request, *, status: int = 200, message: str = "", name: str = "", target: str | None = None):
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = render(request, "login.html", None, status=status, message=message, name=name, csrf=token,
                          next=_local_path(target or request.query_params.get("next")))
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, secure=settings.console_cookie_secure, samesite="strict", path="/login")
        return response

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        form = await _form(request)
        accounts = console(request).accounts
        name, target = form.get("name", ""), form.get("next")
        if not _same(form.get("csrf"), request.cookies.get(LOGIN_CSRF_COOKIE)):
            return login_form(request, status=403, message="The sign-in form was stale (bad CSRF token): try again.", name=name, target=target)
        try:
            who = await accounts.sign_in(name, form.get("password", ""), _address(request))
        except AccountError as exc:
            await accounts.audit(name, "sign-in refused", f"{exc} ({_address(request)})")
            return login_form(request, status=429, message=str(exc), name=name, target=target)
        if who is None:
            await accounts.audit(name, "sign-in failed", _address(request))
            return login_form(request, status=401, message="Wrong name or password.", name=name, target=target)
        await accounts.audit(who.name, "sign-in", _address(request))
        response = RedirectResponse(_local_path(target), status_code=303)
        response.set_cookie(
            SESSION_COOKIE, who.session, max_age=settings.console_session_ttl_s, httponly=True,
            secure=settings.console_cookie_secure, samesite="strict", path="/",
        )
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request):
        who = await page_user(request, form=await _form(request))
        await console(request).accounts.sign_out(who.session)
        await console(request).accounts.audit(who.name, "sign-out")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/live", include_in_schema=False)
    async def live(request: Request):
        who = await page_user(request)
        try:
            scope, minutes = await chart_query(request)
        except ApiError as exc:
            return render(request, "refused.html", who, status=400, message=exc.message)
        try:
            initial = await console(request).reader.windows(scope, minutes, console(request).models.display())
        except RedisError:
            initial = None
        nav = console(request).pages.get_template("nav.html").render(who=who, path="/live")
        return HTMLResponse(live_page(nav, scope=scope, minutes=minutes, refresh_s=settings.dashboard_refresh_s, initial=initial))

    @app.get("/incidents", include_in_schema=False)
    async def incidents_page(request: Request):
        who = await page_user(request)
        try:
            wanted = IncidentFilter.parse(request.query_params)
        except BadQuery as exc:
            return render(request, "refused.html", who, status=400, message=str(exc))
        found = await console(request).reader.incident_list(wanted)
        return render(request, "incidents.html", who, incidents=found, wanted=wanted, scopes=await fresh_scopes(request))

    @app.get("/incidents/{incident_id}", include_in_schema=False)
    async def incident_page(request: Request, incident_id: str):
        return await incident_view(request, await page_user(request), incident_id)

    async def incident_view(request: Request, who: Principal, incident_id: str, *, status: int = 200, message: str = "", failed: bool = False):
        found = await console(request).reader.incident(incident_id)
        if found is None:
            return render(request, "refused.html", who, status=404, message=f"No incident {incident_id} in the history.")
        return render(request, "incident.html", who, status=status, incident=found, message=message, failed=failed)

    @app.post("/incidents/{incident_id}/actions", include_in_schema=False)
    async def incident_action(request: Request, incident_id: str):
        form = await _form(request)
        who = await page_user(request, "responder", form=form)
        action = form.get("action", "")
        try:
            minutes = float(form["minutes"]) if form.get("minutes") else None
        except ValueError:
            return await incident_view(request, who, incident_id, status=422, message="Minutes must be a number.", failed=True)
        try:
            done = await act(request, who, incident_id, ActionRequest(action, minutes, form.get("reason", ""), form.get("text", "")))
        except ApiError as exc:
            return await incident_view(request, who, incident_id, status=exc.status, message=exc.message, failed=True)
        said = {"acknowledged": "Acknowledged", "snoozed": "Snoozed", "resolved": "Resolved", "false_alarm": "Marked a false alarm", "note": "Note added"}
        return await incident_view(request, who, incident_id, message=f"{said[done['action']]}: announcement {done['alert_id']}.")

    @app.get("/silences", include_in_schema=False)
    async def silences_page(request: Request):
        return await silences_view(request, await page_user(request))

    async def silences_view(request: Request, who: Principal, *, status: int = 200, message: str = "", failed: bool = False):
        current = await console(request).silences.current(now_ms=int(time.time() * 1000))
        return render(request, "silences.html", who, status=status, silences=[s.to_dict() | {"matchers": s.matchers} for s in current],
                      scopes=await fresh_scopes(request), message=message, failed=failed)

    @app.post("/silences", include_in_schema=False)
    async def silence_post(request: Request):
        form = await _form(request)
        who = await page_user(request, "responder", form=form)
        try:
            minutes = float(form.get("minutes") or 0)
            made = await silence(request, who, SilenceBody(
                scope=form.get("scope") or None, signal=form.get("signal") or None, severity=form.get("severity") or None,
                minutes=minutes, reason=form.get("reason", ""),
            ))
        except ValueError:
            return await silences_view(request, who, status=422, message="Minutes must be a number.", failed=True)
        except ApiError as exc:
            return await silences_view(request, who, status=exc.status, message=exc.message, failed=True)
        return await silences_view(request, who, message=f"Silence {made['id']} holds until {made['ends']}.")

    @app.post("/silences/{silence_id}/expire", include_in_schema=False)
    async def silence_expire_post(request: Request, silence_id: str):
        form = await _form(request)
        who = await page_user(request, "responder", form=form)
        try:
            await expire_silence(request, who, silence_id)
        except ApiError as exc:
            return await silences_view(request, who, status=exc.status, message=exc.message, failed=True)
        return await silences_view(request, who, message=f"Silence {silence_id} lifted.")

    @app.get("/test", include_in_schema=False)
    async def test_page(request: Request):
        who = await page_user(request)
        return render(request, "test.html", who, text="", result=None, error="")

    @app.post("/test", include_in_schema=False)
    async def test_post(request: Request):
        form = await _form(request)
        who = await page_user(request, form=form)
        text = form.get("text", "")
        try:
            result = await score(request, [text])
        except ApiError as exc:
            return render(request, "test.html", who, status=exc.status, text=text, result=None, error=exc.message)
        await console(request).accounts.audit(who.name, "score", "1 text (test a post)")
        # Feedback names a post id, never its text: a typed post gets one derived from the text.
        result["post_id"] = f"console-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
        return render(request, "test.html", who, text=text, result=result, error="")

    @app.post("/feedback", include_in_schema=False)
    async def feedback_post(request: Request):
        form = await _form(request)
        who = await page_user(request, "responder", form=form)
        label = form.get("label", "")
        if label not in FEEDBACK_LABELS:
            return render(request, "refused.html", who, status=422, message="Choose negative or not negative.")
        try:
            sent = await feedback(request, who, form.get("post_id", ""), label, form.get("comment", ""))
        except ApiError as exc:
            return render(request, "refused.html", who, status=exc.status, message=exc.message)
        return render(request, "feedback.html", who, sent=sent, back=_local_path(form.get("back") or "/test"))

    @app.get("/admin", include_in_schema=False)
    async def admin_page(request: Request):
        who = await page_user(request, "admin")
        return await admin_view(request, who)

    async def admin_view(request: Request, who: Principal, *, status: int = 200, message: str = "", new_token: str = ""):
        accounts = console(request).accounts
        return render(
            request, "admin.html", who, status=status, message=message, new_token=new_token,
            users=await accounts.users(), tokens=await accounts.tokens(), audit=await accounts.audit_trail(),
        )

    @app.post("/admin/{action}", include_in_schema=False)
    async def admin_action(request: Request, action: str):
        form = await _form(request)
        who = await page_user(request, "admin", form=form)
        accounts = console(request).accounts
        name, role = form.get("name", ""), form.get("role", "")
        try:
            if action == "add-user":
                await accounts.add_user(name, role, form.get("password", ""))
                await accounts.audit(who.name, "user added", f"{name} ({role})")
                return await admin_view(request, who, message=f"Added {name} ({role}).")
            if action == "remove-user":
                removed = await accounts.remove_user(name)
                await accounts.audit(who.name, "user removed", name)
                return await admin_view(request, who, message=f"Removed {name}." if removed else f"No user {name}.")
            if action == "create-token":
                token = await accounts.create_token(name, role)
                await accounts.audit(who.name, "token created", f"{name} ({role})")
                return await admin_view(request, who, message=f"Token {name} ({role}) created: copy it now, it is not shown again.", new_token=token)
            if action == "revoke-token":
                revoked = await accounts.revoke_token(name)
                await accounts.audit(who.name, "token revoked", name)
                return await admin_view(request, who, message=f"Revoked {name}." if revoked else f"No token {name}.")
        except AccountError as exc:
            return await admin_view(request, who, status=422, message=str(exc))
        return render(request, "refused.html", who, status=404, message=f"No admin action {action!r}.")

    return app


def live_page(nav: str, *, scope: str, minutes: int, refresh_s: int, initial: dict | None) -> str:
    """The worker's dashboard page, fed from the console's API, under the console's menu."""
    page = dashboard_page(scope=scope, minutes=minutes, refresh_s=refresh_s, initial=initial)
    return page.replace('fetch("api/windows?', 'fetch("/api/v1/windows?').replace("<body>", "<body>\n" + nav, 1)


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    uvicorn.run(create_app(settings), host=host or settings.console_host, port=port or settings.console_port,
                log_level="info", proxy_headers=True, server_header=False)
