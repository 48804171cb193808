"""The model lifecycle on the real broker, Redis and MLflow registry: a hot swap under
load, shadow scoring by the challenger, a drift alert on a shifted stream, and the
retraining loop end to end."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
import uuid

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from alerting.feedback import Feedback, FeedbackStore
from badbuzz import replay as rp
from badbuzz.processes import free_port, settings_env
from benchmarks.keys import delete_prefix
from benchmarks.run import french_posts
from config.connections import shared_keyspace
from config.settings import Settings
from config.topics import delete_topics, ensure_topics
from counting.counters import Counters, Prediction
from models.registry import ModelRegistry
from models.scorer import load_scorer
from stream.shadow import ShadowStore, in_sample
from tests.conftest import REPO, running_worker, wait_for, worker_env_base
from training import registry_ops, tracking
from training.train import train

pytestmark = pytest.mark.integration

NAME = "badbuzz-sentiment"
MINUTE = 60_000


@pytest.fixture(scope="module")
def registry_home(tmp_path_factory, live_services):
    """A private registry with two TF-IDF versions: v1 (champion) and v2."""
    home = tmp_path_factory.mktemp("lifecycle-home")
    settings = Settings(home=home, mlflow_tracking_uri="")
    quiet = lambda *_: None  # noqa: E731
    train("tfidf", "airline", "negative_vs_rest", settings, limit=800, progress=quiet)
    train("tfidf", "airline", "negative_vs_rest", settings, limit=1600, progress=quiet)
    return home


def private_settings(live_services, home, **overrides) -> Settings:
    kafka, redis_url = live_services
    tag = uuid.uuid4().hex[:10]
    base = dict(
        home=home, mlflow_tracking_uri="", kafka_bootstrap=kafka, redis_url=redis_url,
        topic_raw=f"t-{tag}.raw", topic_dlq=f"t-{tag}.dlq", topic_alerts=f"t-{tag}.alerts", topic_feedback=f"t-{tag}.feedback",
        redis_prefix=f"test:{tag}", app_id=f"badbuzz-test-{tag}", web_port=free_port(), model_poll_s=1.0, shadow_fraction=0.0,
        # Which model version counted each post is what these tests look at.
        keep_predictions="all",
    )
    return Settings(**{**base, **overrides})


def set_aliases(settings: Settings, **aliases: str | None) -> None:
    client = tracking.open_store(settings)
    for alias, version in aliases.items():
        if version is None:
            if alias in client.get_registered_model(NAME).aliases:
                client.delete_registered_model_alias(NAME, alias)
        else:
            client.set_registered_model_alias(NAME, alias, version)


async def topics_for(settings: Settings):
    names = [settings.topic_raw, settings.topic_dlq, settings.topic_alerts, settings.topic_feedback]
    await ensure_topics(settings, names)
    return names


def message(post_id: str, text: str, event_ms: int) -> tuple[bytes, bytes]:
    return post_id.encode(), orjson.dumps({"id": post_id, "text": text, "created_at": event_ms})


async def predictions(redis: aioredis.Redis, prefix: str, ids: list[str]) -> dict[str, Prediction | None]:
    return await Counters(redis, prefix=prefix, ttl_s=1, keep_predictions="all").predictions(ids)


def logged(path, text: str):
    async def check() -> bool:
        return text in path.read_text()

    return check


def metrics_text(settings: Settings) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}/metrics", timeout=10) as response:
        return response.read().decode()


async def drain(settings: Settings, topic: str, idle_ms: int = 1500) -> list[dict]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    out = []
    try:
        while batch := await consumer.getmany(timeout_ms=idle_ms):
            for part in batch.values():
                out.extend(orjson.loads(r.value) for r in part)
    finally:
        await consumer.stop()
    return out


def test_a_variant_serves_the_newest_version_of_its_family(live_services, registry_home):
    from models.scorer import ModelError
    from stream.model_watch import Registry, load_initial, target_from

    settings = private_settings(live_services, registry_home, model_variant="tfidf")
    set_aliases(settings, champion="1", challenger=None)
    assert load_initial(settings).info.version == "2"
    assert load_initial(settings.model_copy(update={"model_variant": ""})).info.version == "1"
    assert Registry(settings).target_version(target_from(settings.model_copy(update={"model_variant": "gru"}))) is None
    with pytest.raises(ModelError, match=r"no registered gru version of badbuzz-sentiment \(BADBUZZ_MODEL_VARIANT=gru\)"):
        load_initial(settings.model_copy(update={"model_variant": "gru"}))


async def test_hot_swap_under_load_counts_every_post_once_and_scores_after_the_swap_with_v2(live_services, registry_home, tmp_path):
    settings = private_settings(live_services, registry_home)
    set_aliases(settings, champion="1", challenger=None)
    names = await topics_for(settings)
    texts = [p.text for p in rp.load_posts("airline", seed=5)[:3000]]
    redis = aioredis.Redis.from_url(settings.redis_url)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    log = tmp_path / "worker.log"
    sent_at: dict[str, float] = {}
    stop = asyncio.Event()

    async def produce_continuously() -> None:
        n = 0
        base_ms = (int(time.time() * 1000) // MINUTE - 5) * MINUTE
        while not stop.is_set():
            for _ in range(10):
                post_id = f"s{n}"
                key, value = message(post_id, texts[n % len(texts)], base_ms + (n % 300) * 1000)
                await producer.send(settings.topic_raw, key=key, value=value)
                sent_at[post_id] = time.monotonic()
                n += 1
            await asyncio.sleep(0.1)  # ~100 posts/s

    try:
        with running_worker(settings, log) as worker:
            feeding = asyncio.create_task(produce_continuously())

            async def some_counted_by_v1():
                got = await predictions(redis, settings.redis_prefix, list(sent_at)[:50])
                return len(got) == 50 and all(p is not None and p.model_version == "1" for p in got.values())

            await wait_for(some_counted_by_v1, timeout=120, what="posts counted by v1", process=worker)
            set_aliases(settings, champion="2")
            swap_line = "model swap: now serving badbuzz-sentiment v2 (tfidf) (was badbuzz-sentiment v1 (tfidf))"
            await wait_for(logged(log, swap_line), timeout=60, what="the swap in the worker log", process=worker)
            swapped_at = time.monotonic()
            await asyncio.sleep(3)
            # Redelivered and repeated ids around the swap must not count again.
            for post_id in list(sent_at)[:40]:
                key, value = message(post_id, "a repeated id with another text", int(time.time() * 1000))
                await producer.send(settings.topic_raw, key=key, value=value)
            await asyncio.sleep(1)
            stop.set()
            await feeding
            await producer.flush()
            ids = list(sent_at)

            async def all_counted():
                got = await predictions(redis, settings.redis_prefix, ids)
                return all(p is not None for p in got.values())

            await wait_for(all_counted, timeout=120, what=f"all {len(ids)} posts counted", process=worker)
            await asyncio.sleep(2)  # let the repeated ids through too
            assert 'version="2"' in [line for line in metrics_text(settings).splitlines() if line.startswith("badbuzz_model_info")][0]
            assert 'badbuzz_model_swaps_total{outcome="loaded",role="champion"} 1.0' in metrics_text(settings)

        got = await predictions(redis, settings.redis_prefix, ids)
        versions = {post_id: p.model_version for post_id, p in got.items()}
        assert set(versions.values()) == {"1", "2"}
        after = [post_id for post_id in ids if sent_at[post_id] > swapped_at]
        assert after and all(versions[post_id] == "2" for post_id in after)
        # Every post counted exactly once: the counters hold exactly the unique posts.
        now_minute = int(time.time() * 1000) // MINUTE
        buckets = await Counters(redis, prefix=settings.redis_prefix, ttl_s=1).buckets("all", range(now_minute - 30, now_minute + 5))
        assert sum(b.total for b in buckets.values()) == len(ids)
        # Scores match the model each post was recorded with.
        local = {v: load_scorer(f"models:/{NAME}/{v}", tracking_uri=settings.tracking_uri, cache_dir=registry_home / "model-cache") for v in ("1", "2")}
        sample = ids[:: max(1, len(ids) // 200)]
        for version in ("1", "2"):
            mine = [i for i in sample if versions[i] == version]
            if mine:
                scores = local[version].score_batch([texts[int(i[1:]) % len(texts)] for i in mine])
                assert [round(got[i].score, 9) for i in mine] == [round(float(s), 9) for s in scores]
    finally:
        stop.set()
        await producer.stop()
        await redis.aclose()
        await delete_topics(settings, names)


async def test_the_challenger_shadow_scores_its_share_and_compare_logs_it(live_services, registry_home, tmp_path):
    settings = private_settings(live_services, registry_home, shadow_fraction=0.5)
    set_aliases(settings, champion="1", challenger="2")
    names = await topics_for(settings)
    texts = [p.text for p in rp.load_posts("airline", seed=9)[:400]]
    ids = [f"c{i}" for i in range(len(texts))]
    base_ms = (int(time.time() * 1000) // MINUTE - 10) * MINUTE
    redis = aioredis.Redis.from_url(settings.redis_url)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    log = tmp_path / "worker.log"
    picked = [i for i in ids if in_sample(i, 0.5)]
    store = ShadowStore(redis, prefix=settings.redis_prefix)
    try:
        with running_worker(settings, log) as worker:
            await wait_for(logged(log, "challenger: badbuzz-sentiment v2 (tfidf) now shadow-scores"), timeout=90, what="the challenger to load", process=worker)
            for n, (post_id, text) in enumerate(zip(ids, texts)):
                key, value = message(post_id, text, base_ms + n * 1000)
                await producer.send(settings.topic_raw, key=key, value=value)
            await producer.flush()

            async def compared():
                totals = (await store.totals(0, 10**9)).get(("1", "2"))
                return totals if totals is not None and totals.posts >= len(picked) else None

            totals = await wait_for(compared, timeout=120, what="the shadow comparison", process=worker)
            exposition = metrics_text(settings)
        assert totals.posts == len(picked)
        assert f'badbuzz_shadow_posts_total{{outcome="scored"}} {float(len(picked))}' in exposition
        assert 'badbuzz_shadow_posts_total{outcome="dropped"} 0.0' in exposition
        # Both sides' labels, checked against each model scoring the same posts here.
        by_id = dict(zip(ids, texts))
        cache = registry_home / "model-cache"
        v1 = load_scorer(f"models:/{NAME}/1", tracking_uri=settings.tracking_uri, cache_dir=cache).score_batch([by_id[i] for i in picked])
        v2 = load_scorer(f"models:/{NAME}/2", tracking_uri=settings.tracking_uri, cache_dir=cache).score_batch([by_id[i] for i in picked])
        assert totals.champion_negative == int((v1 >= 0.5).sum())
        assert totals.challenger_negative == int((v2 >= 0.5).sum())
        assert totals.agreed == int(((v1 >= 0.5) == (v2 >= 0.5)).sum())
        assert totals.abs_delta == pytest.approx(float(abs(v1 - v2).sum()), rel=1e-6)

        env = {**worker_env_base(), **settings_env(settings)}
        done = subprocess.run([sys.executable, "-m", "badbuzz.cli", "compare", "--since", "2h"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"| v1 | v2 | {len(picked)} | {totals.agreement:.1%} |" in done.stdout
        assert "logged on the MLflow runs of v2" in done.stdout
        client = tracking.open_store(settings)
        run = client.get_run(client.get_model_version(NAME, "2").run_id)
        assert run.data.metrics["shadow_posts_vs_v1"] == len(picked)
        assert run.data.metrics["shadow_agreement_vs_v1"] == pytest.approx(totals.agreement)
    finally:
        set_aliases(settings, challenger=None)
        await producer.stop()
        await redis.aclose()
        await delete_topics(settings, names)


async def test_a_shifted_stream_raises_a_drift_alert(live_services, registry_home, tmp_path):
    settings = private_settings(live_services, registry_home, drift_check_s=1.0, drift_min_posts=200, drift_window_min=10)
    # v2 saw more data: its reference histogram (160 validation posts) is the steadier one.
    set_aliases(settings, champion="2", challenger=None)
    names = await topics_for(settings)
    calm = [p.text for p in rp.load_posts("airline", seed=21)[:300]]
    base_ms = (int(time.time() * 1000) // MINUTE - 20) * MINUTE
    redis = aioredis.Redis.from_url(settings.redis_url)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    log = tmp_path / "worker.log"

    async def send(prefix: str, texts: list[str]) -> list[str]:
        ids = []
        for n, text in enumerate(texts):
            ids.append(f"{prefix}{n}")
            key, value = message(ids[-1], text, base_ms + n * 2000)
            await producer.send(settings.topic_raw, key=key, value=value)
        await producer.flush()
        return ids

    def gauge(name: str) -> float | None:
        for line in metrics_text(settings).splitlines():
            if line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    try:
        with running_worker(settings, log) as worker:
            calm_ids = await send("calm", calm)

            async def judged_calm():
                counted = await predictions(redis, settings.redis_prefix, calm_ids)
                return all(counted.values()) and gauge("badbuzz_drift_oov_ratio") is not None

            await wait_for(judged_calm, timeout=120, what="the in-domain window to be judged", process=worker)
            await asyncio.sleep(2)  # one more check after the last batch
            calm_psi, calm_oov = gauge("badbuzz_drift_score_psi"), gauge("badbuzz_drift_oov_ratio")
            assert calm_psi < settings.drift_psi_alert and calm_oov < settings.drift_oov_alert
            assert [a for a in await drain(settings, settings.topic_alerts, idle_ms=500) if a["scope"] == "drift"] == []

            await send("fr", french_posts(1200))

            async def drift_alert():
                alerts = await drain(settings, settings.topic_alerts, idle_ms=500)
                return [a for a in alerts if a["scope"] == "drift"]

            alerts = await wait_for(drift_alert, timeout=120, what="a drift alert", process=worker)
            shifted_oov = gauge("badbuzz_drift_oov_ratio")

        alert = alerts[0]
        assert (alert["signal"], alert["action"], alert["model_version"]) == ("model_quality", "opened", "2")
        assert alert["drift_oov_rate"] >= settings.drift_oov_alert or alert["drift_psi"] >= settings.drift_psi_alert
        assert alert["drift_psi_threshold"] == 0.25 and alert["drift_oov_threshold"] == 0.3
        assert set(alert["new_terms"]) & {"vol", "est", "et", "les", "bagages", "personne", "heures"}
        assert not any(t.startswith("@") for t in alert["new_terms"])
        assert shifted_oov >= calm_oov + 0.2
        assert "the model's input (drift)" in log.read_text()
        # What the retraining policy reads.
        assert await redis.zcard(f"{shared_keyspace(settings.redis_prefix)}:drift:alerts") == 1
    finally:
        await producer.stop()
        await redis.aclose()
        await delete_topics(settings, names)


async def test_retraining_from_feedback_end_to_end(live_services, tmp_path):
    from badbuzz.retrain import retrain

    home = tmp_path / "home"
    settings = private_settings(live_services, home, retrain_min_feedback=1000, retrain_min_verdicts=20, retrain_min_accuracy=0.82)
    train("tfidf", "airline", "negative_vs_rest", settings, limit=800, progress=lambda *_: None)
    names = await topics_for(settings)
    posts = rp.load_posts("airline", seed=33)[:60]
    now_ms = int(time.time() * 1000)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    redis = aioredis.Redis.from_url(settings.redis_url)
    store = FeedbackStore(redis, prefix=settings.redis_prefix, ttl_s=3600)
    info = load_scorer(f"models:/{NAME}/1", tracking_uri=settings.tracking_uri, cache_dir=home / "model-cache").info
    try:
        for n, post in enumerate(posts):
            key, value = message(f"f{n}", post.text, now_ms - 60_000)
            await producer.send(settings.topic_raw, key=key, value=value)
            label = "negative" if post.negative else "positive"
            # The model was wrong on every third post.
            said_negative = post.negative if n % 3 else not post.negative
            await store.record(Feedback(f"f{n}", label, "", now_ms, "test"), Prediction(0.9 if said_negative else 0.1, said_negative, "1"), info, now_ms=now_ms)
        await producer.flush()
        lines: list[str] = []

        quiet = await asyncio.to_thread(retrain, settings.model_copy(update={"retrain_min_verdicts": 100}), if_needed=True, progress=lines.append)
        assert quiet.version is None and not quiet.decision.run
        assert lines[-1] == "no retraining needed: no trigger reached"
        assert "60 feedback records, champion right on 40/60 (66.7%), 0 drift alert(s)" in lines[0]
        client = tracking.open_store(settings)
        assert [str(mv.version) for mv in client.search_model_versions(f"name = '{NAME}'")] == ["1"]

        lines.clear()
        result = await asyncio.to_thread(retrain, settings, if_needed=True, progress=lines.append)
        print("\n".join(lines))
        assert result.decision.reasons == ("champion accuracy on feedback 66.7% over 60 verdicts, below 82.0%",)
        assert result.version == "2"
        run = client.get_run(client.get_model_version(NAME, "2").run_id)
        assert (run.data.params["feedback_records"], run.data.params["feedback_recovered"], run.data.params["feedback_missing_text"]) == ("60", "60", "0")
        assert run.data.params["limit"] == "800" and run.data.params["data"] == "airline"
        tags = client.get_model_version(NAME, "2").tags
        assert tags["retrain_feedback"] == "60"
        aliases = {alias: str(v) for alias, v in client.get_registered_model(NAME).aliases.items()}
        registry = ModelRegistry(settings.tracking_uri, NAME)
        reasons = registry_ops.refusals(
            registry_ops.summary(registry, "2"), registry_ops.summary(registry, "1"), settings.promote_metric, settings.promote_accuracy_tolerance
        )
        if reasons:
            assert not result.promoted and list(result.refusals) == reasons
            assert aliases == {"champion": "1", "challenger": "2"}
            assert lines[-1] == f"v2 stays the challenger: {'; '.join(reasons)}"
        else:
            assert result.promoted and aliases == {"champion": "2"}
            assert client.get_model_version(NAME, "2").tags["previous_champion"] == "1"

        make = subprocess.run(["make", "-n", "retrain"], cwd=REPO, capture_output=True, text=True, timeout=30)
        assert "badbuzz retrain --if-needed" in make.stdout
    finally:
        await producer.stop()
        await redis.aclose()
        await delete_topics(settings, names)


async def test_report_reads_volumes_incidents_feedback_shadow_and_drift_from_redis(live_services, tmp_path):
    from alerting.alert import Alert, iso
    from alerting.outbox import Outbox, OutboxConfig
    from badbuzz.report import build_report, period_ending, render_markdown
    from counting.counters import ScoredPost
    from models.drift import DriftStatus
    from models.scorer import ModelInfo
    from stream.drift_monitor import DriftStore
    from stream.shadow import PairTotals

    settings = private_settings(live_services, tmp_path, watch_terms=["delay"])
    redis = aioredis.Redis.from_url(settings.redis_url)
    now_ms = int(time.time() * 1000)
    try:
        counters = Counters(redis, prefix=settings.redis_prefix, ttl_s=3600)
        recent, old = now_ms - 30 * MINUTE, now_ms - 5 * 3_600_000
        posts = [ScoredPost(f"r{i}", recent, 0.9 if i < 30 else 0.1, i < 30, ("all", "term:delay") if i < 10 else ("all",), ()) for i in range(100)]
        posts += [ScoredPost(f"o{i}", old, 0.9, True, ("all",), ()) for i in range(50)]  # outside a 2h report
        await counters.count(posts, model_version="1")
        assert await counters.counted(["r0", "o49", "never-sent"]) == [True, True, False]
        outbox = Outbox(redis, prefix=settings.redis_prefix, sinks=["console"], cfg=OutboxConfig.from_settings(settings))
        for seq, action in ((1, "opened"), (2, "escalated"), (3, "resolved")):
            alert = Alert(f"rate-all-x.{seq}", "rate-all-x", seq, "negative_rate", action, "critical" if seq == 2 else "warning", "all",
                          "a", "b", 15, rate=0.7, volume=120, negatives=84, baseline=0.3, created_at=iso(now_ms - (40 - seq) * MINUTE))
            await outbox.enqueue(alert, now_ms=now_ms)
        store = FeedbackStore(redis, prefix=settings.redis_prefix, ttl_s=3600)
        info = ModelInfo("tfidf", "negative_vs_rest", version="1")
        for i, (label, negative) in enumerate([("negative", True), ("negative", False), ("positive", False), ("positive", True)]):
            await store.record(Feedback(f"r{i}", label, "", now_ms - MINUTE, "test"), Prediction(0.5, negative, "1"), info, now_ms=now_ms)
        await ShadowStore(redis, prefix=settings.redis_prefix).add(now_ms // 3_600_000, "1", "2", PairTotals(40, 36, 4.0, 12, 14, 0.04, 0.08))
        drift = DriftStore(redis, prefix=settings.redis_prefix, window_min=60)
        await drift.record_summary(now_ms - 2000, "1", DriftStatus(600, 0.31, 0.12))
        await drift.record_summary(now_ms - 1000, "1", DriftStatus(650, 0.05, 0.20))
        await drift.record_alert("model-drift-x", now_ms - 2000)

        report = await build_report(settings, period_ending(now_ms, 2 * 3600), redis=redis)
    finally:
        await delete_prefix(redis, settings.redis_prefix)
        await redis.aclose()

    assert report["volumes"]["scopes"] == {
        "all": {"posts": 100, "negative": 30, "negative_rate": 0.3},
        "term:delay": {"posts": 10, "negative": 10, "negative_rate": 1.0},
    }
    assert [i["incident_id"] for i in report["incidents"]] == ["rate-all-x"]
    incident = report["incidents"][0]
    assert (incident["severity"], incident["last_action"], incident["announcements"]) == ("critical", "resolved", 3)
    assert report["feedback"] == {
        "records": 4, "labels": {"negative": 2, "positive": 2}, "right": 2, "wrong": 2, "unknown": 0, "accuracy": 0.5,
        "accuracy_by_model_version": {"1": 0.5},
    }
    assert report["models"] == [{
        "champion": "1", "challenger": "2", "posts": 40, "agreement": 0.9, "mean_abs_delta": 0.1,
        "champion_negative_rate": 0.3, "challenger_negative_rate": 0.35, "champion_ms_per_post": 1.0, "challenger_ms_per_post": 2.0,
    }]
    assert (report["drift"]["psi_max"], report["drift"]["oov_rate_max"], report["drift"]["alerts"]) == (0.31, 0.2, 1)
    assert report["drift"]["hourly"][-1]["psi_last"] == 0.05
    markdown = render_markdown(report)
    assert "| all | 100 | 30 | 30.0% |" in markdown
    assert "| rate-all-x | negative_rate | all | critical |" in markdown
    assert "4 records (negative 2, positive 2); the model was right on 2, wrong on 2, unknown for 0: accuracy 50.0%." in markdown
    assert "| v1 | v2 | 40 | 90.0% | 0.100 | 30.0% / 35.0% | 1.000 / 2.000 |" in markdown
    assert "Highest score PSI 0.310, highest out-of-vocabulary rate 20.0%; 1 drift alert(s)." in markdown


def test_report_cli_writes_json_and_rejects_a_bad_period(live_services, tmp_path):
    settings = private_settings(live_services, tmp_path)
    env = {**worker_env_base(), **settings_env(settings)}
    out = tmp_path / "report.json"
    command = [sys.executable, "-m", "badbuzz.cli", "report", "--since", "3h", "--json", "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"report written to {out}\n"
    body = orjson.loads(out.read_bytes())
    assert set(body) == {"period", "volumes", "incidents", "alert_quality", "feedback", "models", "drift"}
    assert (body["alert_quality"]["incidents"], body["alert_quality"]["silenced_notifications"]) == (0, 0)
    assert body["volumes"]["scopes"]["all"] == {"posts": 0, "negative": 0, "negative_rate": None}
    bad = subprocess.run([sys.executable, "-m", "badbuzz.cli", "report", "--since", "yesterday"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr == "badbuzz: error: --since 'yesterday': expected a positive duration such as 24h, 90m or 7d (see: badbuzz report --help)\n"
    slack = subprocess.run([sys.executable, "-m", "badbuzz.cli", "report", "--slack"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert slack.returncode == 2 and "--slack: Slack is not configured" in slack.stderr
