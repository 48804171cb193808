"""The alert as every sink receives it: one announcement (opened, escalated, reopened,
resolved) of one incident. Carries numbers and post ids only: no user handles, no text."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta

import orjson

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)


def iso(ms: int) -> str:
    """UTC ISO-8601 to the second; a time outside the years 1..9999 (an outside value
    gone wrong) reads as the nearest end of that range instead of failing."""
    try:
        at = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        at = _LAST if ms > 0 else _FIRST
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso(int(datetime.now(tz=UTC).timestamp() * 1000))


_VERBS = {
    "opened": "", "escalated": " escalated", "reopened": " reopened", "resolved": " resolved", "acknowledged": " acknowledged",
    "snoozed": " snoozed", "false_alarm": " marked a false alarm", "note": ": note", "renotified": " still unacknowledged",
}
# Actions that say what people (or the re-notification timer) did, not what the rule saw.
RESPONSES = ("acknowledged", "snoozed", "false_alarm", "note", "renotified")
NO_DRIVERS = "no term stands out against the posts before the window"


@dataclass(frozen=True)
class Alert:
    alert_id: str  # <incident id>.<seq>: names one delivery that sinks deduplicate on
    incident_id: str
    seq: int  # 1 for the opening, +1 per later announcement of the same incident
    signal: str  # negative_rate | volume | model_quality
    # opened | escalated | reopened | resolved, or what people and the re-notification
    # timer did: acknowledged | snoozed | false_alarm | note | renotified
    action: str
    severity: str  # watch | warning | critical
    scope: str  # all | term:<t> | model
    window_start: str
    window_end: str
    window_minutes: int
    short_window_minutes: int = 0
    rate: float = 0.0  # negative rate of the long window
    short_rate: float = 0.0
    baseline: float | None = None  # baseline negative rate (frozen for the incident)
    baseline_source: str = "none"
    volume: int = 0  # posts in the long window
    negatives: int = 0
    expected_volume: float | None = None  # posts the baseline expects in the long window
    volume_ratio: float | None = None
    p_value: float = 1.0
    drivers: list[dict] = field(default_factory=list)  # term, count, baseline_count, z
    example_post_ids: list[str] = field(default_factory=list)
    model: str = ""
    model_version: str = ""
    link: str = ""
    # Model-quality alerts: wrong-prediction feedbacks in the window, and the threshold.
    feedback_wrong: int = 0
    feedback_threshold: int = 0
    # Drift alerts (model_quality on scope "drift", raised by stream.drift_monitor): the
    # window's score PSI and out-of-vocabulary rate against the model's training
    # reference, their thresholds, and the most frequent words the model never saw.
    drift_psi: float | None = None
    drift_psi_threshold: float = 0.0
    drift_oov_rate: float | None = None
    drift_oov_threshold: float = 0.0
    new_terms: list[str] = field(default_factory=list)
    # Announcements of what a responder did: who (a console account), their reason or
    # note, and until when a snooze holds re-notification back.
    actor: str = ""
    note: str = ""
    snoozed_until: str = ""
    # The silence that kept this announcement from every sink ("" when none did).
    muted_by: str = ""
    created_at: str = field(default_factory=now_iso)

    @property
    def top_terms(self) -> list[str]:
        return [d["term"] for d in self.drivers]

    def to_dict(self) -> dict:
        return {**asdict(self), "top_terms": self.top_terms}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> Alert:
        data = orjson.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def scope_label(self) -> str:
        if self.scope == "all":
            return "all posts"
        if self.scope == "model":
            return "the sentiment model"
        if self.scope == "drift":
            return "the model's input (drift)"
        return f'posts mentioning "{self.scope.removeprefix("term:")}"'

    @property
    def headline(self) -> str:
        what = {"negative_rate": "Bad buzz", "volume": "Volume spike", "model_quality": "Model quality"}[self.signal]
        verb = _VERBS[self.action]
        by = f" by {self.actor}" if self.actor else ""
        return f"{what}{verb}{by} [{self.severity.upper()}] on {self.scope_label}"

    @property
    def is_response(self) -> bool:
        """An announcement of what someone did about the incident, not of what the rule saw."""
        return self.action in RESPONSES or bool(self.actor)

    @property
    def response_line(self) -> str:
        """What was done, for the sinks that show a response instead of the numbers."""
        if self.action == "snoozed":
            line = f"{self.actor} snoozed re-notification until {self.snoozed_until}"
        elif self.action == "renotified":
            line = f"still open and not acknowledged: {self.numbers}"
        else:
            line = {"acknowledged": f"{self.actor} is on it", "resolved": f"{self.actor} resolved it by hand",
                    "false_alarm": f"{self.actor} marked it a false alarm", "note": f"note from {self.actor}"}[self.action]
        return f"{line}: {self.note}" if self.note else line

    @property
    def numbers(self) -> str:
        """The one line that says how bad it is."""
        if self.scope == "drift":
            psi = "-" if self.drift_psi is None else f"{self.drift_psi:.2f}"
            oov = "-" if self.drift_oov_rate is None else f"{self.drift_oov_rate:.1%}"
            return (
                f"score PSI {psi} (alert at {self.drift_psi_threshold:g}), out-of-vocabulary rate {oov} "
                f"(alert at {self.drift_oov_threshold:.0%}) over {self.volume} posts in {self.window_minutes} min"
            )
        if self.signal == "model_quality":
            return (
                f"{self.feedback_wrong} wrong-prediction feedbacks in {self.window_minutes} min "
                f"(alert above {self.feedback_threshold})"
            )
        if self.signal == "volume":
            expected = "no usual volume yet" if self.expected_volume is None else f"usual {self.expected_volume:.0f}"
            ratio = "" if self.volume_ratio is None else f", {self.volume_ratio:.1f}x"
            return f"{self.volume} posts in {self.window_minutes} min ({expected}{ratio}), negative rate {self.rate:.1%}"
        baseline = "-" if self.baseline is None else f"{self.baseline:.1%}"
        return (
            f"negative rate {self.rate:.1%} over {self.window_minutes} min ({self.negatives}/{self.volume} posts), "
            f"{self.short_rate:.1%} over the last {self.short_window_minutes} min, vs baseline {baseline} ({self.baseline_source})"
        )

    def summary(self) -> str:
        if self.is_response:
            return f"{self.headline}\n  {self.response_line}\n  incident {self.incident_id}  alert {self.alert_id}" + (f"  {self.link}" if self.link else "")
        lines = [self.headline, f"  {self.numbers}"]
        if self.signal != "model_quality":
            lines.append(f"  window {self.window_start} .. {self.window_end}  p={self.p_value:.2g}")
            lines.append(f"  drivers: {', '.join(self.top_terms) or NO_DRIVERS}")
            lines.append(f"  example posts: {', '.join(self.example_post_ids) or '-'}")
        if self.new_terms:
            lines.append(f"  new frequent terms: {', '.join(self.new_terms)}")
        lines.append(f"  model {self.model}  incident {self.incident_id}  alert {self.alert_id}" + (f"  {self.link}" if self.link else ""))
        return "\n".join(lines)
