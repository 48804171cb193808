"""The alert as every sink receives it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import orjson


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Alert:
    incident_id: str
    action: str  # opened | escalated | resolved
    severity: str  # warning | critical
    scope: str
    window_start: str
    window_end: str
    window_minutes: int
    rate: float
    baseline: float
    volume: int
    negatives: int
    top_terms: list[str]
    model: str
    model_version: str
    created_at: str = field(default_factory=lambda: iso(int(datetime.now(tz=timezone.utc).timestamp() * 1000)))

    @property
    def alert_id(self) -> str:
        # One incident announces each action at most once, so this names a delivery
        # that sinks can deduplicate on.
        return f"{self.incident_id}:{self.action}"

    def to_dict(self) -> dict:
        return {"alert_id": self.alert_id, **asdict(self)}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @property
    def headline(self) -> str:
        scope = "all posts" if self.scope == "all" else f'posts mentioning "{self.scope.removeprefix("term:")}"'
        verb = {"opened": "Bad buzz", "escalated": "Bad buzz escalated", "resolved": "Resolved"}[self.action]
        return f"{verb} [{self.severity.upper()}] on {scope}"

    def summary(self) -> str:
        return (
            f"{self.headline}\n"
            f"  negative rate {self.rate:.1%} over {self.window_minutes} min "
            f"({self.negatives}/{self.volume} posts) vs baseline {self.baseline:.1%}\n"
            f"  window {self.window_start} .. {self.window_end}\n"
            f"  top negative terms: {', '.join(self.top_terms) or '-'}\n"
            f"  model {self.model}  incident {self.incident_id}"
        )
