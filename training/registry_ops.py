"""Operating the Model Registry with aliases: the promotion gate and the leaderboard.

``champion`` is what workers serve, so moving it is gated: the candidate must beat the
champion on the promotion metric over the same held-out test set, without losing more
than a tolerance of accuracy, and must answer the same question (label scheme).
``challenger`` marks a version to watch and moves freely. The gate compares the metrics
logged on each version's training run. Every registry call goes through
``models.registry``."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from config.settings import PROMOTION_METRICS
from models.registry import ALIASES, CHALLENGER, CHAMPION, ModelRegistry, RegisteredVersion, RegistryError

ACCURACY = "test_accuracy"
# Two floats logged from the same data can differ in the last bits; a drop equal to the
# tolerance must pass.
_EPSILON = 1e-9


class PromotionRefused(Exception):
    def __init__(self, version: str, alias: str, reasons: Sequence[str]):
        self.version, self.alias, self.reasons = version, alias, list(reasons)
        super().__init__(f"v{version} not promoted to {alias}: {'; '.join(reasons)} (--force promotes anyway)")


@dataclass(frozen=True)
class VersionSummary:
    version: str
    family: str = ""
    scheme: str = ""
    data_hash: str = ""
    test_split_hash: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    run_id: str = ""


@dataclass(frozen=True)
class Promotion:
    version: str
    alias: str
    previous: str | None
    forced: bool = False
    overridden: tuple[str, ...] = ()
    unchanged: bool = False


def refusals(candidate: VersionSummary, champion: VersionSummary, metric: str, tolerance: float) -> list[str]:
    """Why ``candidate`` may not replace ``champion``; empty when it may. Metrics are
    compared only between comparable versions: same scheme, same held-out test set."""
    ch = f"champion v{champion.version}"
    reasons = []
    if candidate.scheme != champion.scheme:
        reasons.append(
            f"label scheme {candidate.scheme or '?'} differs from {ch}'s {champion.scheme or '?'} "
            "(the stream's negative rate would change meaning)"
        )
    if candidate.data_hash != champion.data_hash:
        reasons.append(
            f"trained on other data (hash {_short(candidate.data_hash)} vs {ch}'s {_short(champion.data_hash)}), "
            "so the test sets are not comparable"
        )
    # Another scheme implies another test split, already reported. The hash is checked
    # only when both runs logged it, so versions trained before it existed stay comparable.
    elif (
        candidate.scheme == champion.scheme
        and candidate.test_split_hash and champion.test_split_hash
        and candidate.test_split_hash != champion.test_split_hash
    ):
        reasons.append(f"held-out test set differs from {ch}'s (another --limit or data subset?), so the metrics are not comparable")
    if reasons:
        return reasons
    for name in dict.fromkeys((metric, ACCURACY)):
        for side in (candidate, champion):
            if name not in side.metrics:
                reasons.append(f"v{side.version}'s run has no {name} logged")
    if reasons:
        return reasons
    mine, theirs = candidate.metrics[metric], champion.metrics[metric]
    if not mine > theirs:
        reasons.append(f"{metric} {mine:.4f} does not beat {ch}'s {theirs:.4f}")
    drop = champion.metrics[ACCURACY] - candidate.metrics[ACCURACY]
    if drop > tolerance + _EPSILON:
        reasons.append(
            f"{ACCURACY} {candidate.metrics[ACCURACY]:.4f} is {drop:.4f} below {ch}'s "
            f"{champion.metrics[ACCURACY]:.4f}, more than the tolerance {tolerance:g}"
        )
    return reasons


def summaries(registry: ModelRegistry) -> list[VersionSummary]:
    """Every version with its training run's facts, oldest first."""
    held = registry.aliases()
    return [_summary(registry, v, held) for v in registry.versions()]


def summary(registry: ModelRegistry, version: str) -> VersionSummary:
    return _summary(registry, registry.version(version), registry.aliases())


def promote(
    registry: ModelRegistry,
    version: str,
    *,
    alias: str = CHAMPION,
    metric: str,
    tolerance: float,
    force: bool = False,
    now: datetime | None = None,
) -> Promotion:
    """Move ``alias`` to ``version``. For the champion alias, raise ``PromotionRefused``
    unless the gate passes or ``force``; a promotion tags the version with when, whether
    forced (and what that overrode) and the champion it replaced, which is the version to
    promote back to for a rollback. A challenger that becomes champion stops being the
    challenger."""
    if alias not in ALIASES:
        raise ValueError(f"unknown alias {alias!r}; expected one of {', '.join(ALIASES)}")
    if metric not in PROMOTION_METRICS:
        raise ValueError(f"unknown promotion metric {metric!r}; expected one of {', '.join(PROMOTION_METRICS)}")
    held = registry.aliases()
    previous = held.get(alias)
    candidate = summary(registry, version)
    if previous == candidate.version:
        return Promotion(candidate.version, alias, previous, unchanged=True)
    if alias == CHALLENGER and held.get(CHAMPION) == candidate.version:
        raise ValueError(f"v{candidate.version} is the champion; a challenger is a version competing with it")
    reasons: list[str] = []
    if alias == CHAMPION and previous is not None:
        reasons = refusals(candidate, summary(registry, previous), metric, tolerance)
        if reasons and not force:
            raise PromotionRefused(candidate.version, alias, reasons)
    if alias == CHAMPION:
        stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
        tags = {"promoted_at": stamp, "promoted_by_force": str(force).lower(), "previous_champion": previous or ""}
        if reasons:
            tags["force_overrode"] = "; ".join(reasons)
        registry.tag_version(candidate.version, tags)
    registry.set_alias(alias, candidate.version)
    if alias == CHAMPION and held.get(CHALLENGER) == candidate.version:
        registry.delete_alias(CHALLENGER)  # the challenge is over: it won
    return Promotion(candidate.version, alias, previous, forced=force, overridden=tuple(reasons))


LEADERBOARD_COLUMNS = (
    ("version", False), ("family", False), ("scheme", False), ("accuracy", True), ("neg. recall", True),
    ("neg. F1", True), ("p50 ms", True), ("size MB", True), ("data", False), ("aliases", False),
)


def ranked(rows: Sequence[VersionSummary], metric: str) -> list[VersionSummary]:
    """Best ``metric`` first; versions without it last; ties by version number."""
    return sorted(rows, key=lambda s: (metric not in s.metrics, -s.metrics.get(metric, 0.0), int(s.version)))


def render_leaderboard(rows: Sequence[VersionSummary]) -> str:
    """A Markdown table, padded so it also reads as plain text; one row per version in
    the given order."""
    cells = [[
        s.version, s.family or "-", s.scheme or "-",
        _number(s.metrics.get("test_accuracy"), 4), _number(s.metrics.get("test_recall_negative"), 4),
        _number(s.metrics.get("test_f1_negative"), 4), _number(s.metrics.get("latency_p50_ms"), 2),
        _number(_megabytes(s.metrics.get("bundle_size_bytes")), 2), _short(s.data_hash), ",".join(s.aliases) or "-",
    ] for s in rows]
    headers = [title for title, _ in LEADERBOARD_COLUMNS]
    widths = [max(len(column[i]) for column in (headers, *cells)) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        padded = (
            value.rjust(width) if numeric else value.ljust(width)
            for value, width, (_, numeric) in zip(values, widths, LEADERBOARD_COLUMNS)
        )
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (width + 1) + ":" if numeric else "-" * (width + 2) for width, (_, numeric) in zip(widths, LEADERBOARD_COLUMNS)
    ) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in cells)]) + "\n"


def leaderboard_document(name: str, metric: str, rows: Sequence[VersionSummary]) -> str:
    return (
        f"# Model leaderboard: {name}\n\n"
        f"Ranked by {metric} on each version's held-out test split; compare only rows with the "
        "same scheme and data.\n\n" + render_leaderboard(rows)
    )


def _summary(registry: ModelRegistry, registered: RegisteredVersion, held: dict[str, str]) -> VersionSummary:
    version, run_id = registered.version, registered.run_id
    aliases = tuple(sorted(alias for alias, v in held.items() if v == version))
    if not run_id:
        return VersionSummary(version, aliases=aliases)
    try:
        run = registry.run(run_id)
    except RegistryError:
        return VersionSummary(version, aliases=aliases, run_id=run_id)
    return VersionSummary(
        version=version,
        family=run.params.get("family", ""),
        scheme=run.params.get("scheme", ""),
        data_hash=run.tags.get("data_hash", ""),
        test_split_hash=run.tags.get("test_split_hash", ""),
        metrics=run.metrics,
        aliases=aliases,
        run_id=run_id,
    )


def _short(digest: str) -> str:
    return digest[:8] if digest else "-"


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _megabytes(size: float | None) -> float | None:
    return None if size is None else size / 1_000_000
