"""Secrets never reach output: not in CLI errors, not in any log record at any level."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alerting.slack import SlackWebhookSink
from config.connections import install_log_redaction, redact_url
from config.settings import Settings
from tests.loopback import Loopback

REPO = Path(__file__).resolve().parents[2]
IKEY = "6f0e2c1a-1b2c-4d3e-8f90-123456789abc"


@pytest.fixture
def restore_logging():
    factory = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(factory)


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
    ("rediss://worker:p@ss:w0rd@cache:6380", "rediss://worker:***@cache:6380"),
    ("redis://cache:6379/0?password=hunter2&db=1", "redis://cache:6379/0?password=***&db=1"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("sqlite:////home/u/mlflow.db", "sqlite:////home/u/mlflow.db"),
])
def test_urls_are_printed_without_their_password(url, shown):
    assert redact_url(url) == shown


def test_a_cli_error_shows_the_redis_url_without_its_password(tmp_path):
    env = {
        **os.environ, "PYTHONPATH": str(REPO), "BADBUZZ_HOME": str(tmp_path),
        # Port 1 refuses connections: the command fails on its Redis URL.
        "BADBUZZ_REDIS_URL": "redis://:hunter2-secret@127.0.0.1:1/0",
    }

    done = subprocess.run(
        [sys.executable, "-m", "badbuzz.cli", "-v", "report", "--since", "1h"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )

    assert done.returncode == 1, done.stderr
    assert "hunter2" not in done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("badbuzz: cannot read Redis at redis://:***@127.0.0.1:1/0: ")


async def test_slack_sdk_debug_logs_mask_the_webhook_url(restore_logging, caplog):
    async with Loopback() as slack:
        url = f"{slack.url}/services/T000/B000/s3cr3tW3bh00k"
        install_log_redaction(Settings(SLACK_WEBHOOK_URL=url, _env_file=None))
        with caplog.at_level(logging.DEBUG, logger="slack_sdk"):
            await SlackWebhookSink(url).client.send(text="hello")
            logging.getLogger("slack_sdk.webhook").debug("posting to %s", "https://hooks.slack.com/services/T1/B2/abcdef")

    sent = [r for r in caplog.records if r.name.startswith("slack_sdk")]
    assert any("Sending a request" in r.getMessage() for r in sent)
    assert "s3cr3tW3bh00k" not in caplog.text
    assert "abcdef" not in caplog.text
    assert "posting to https://hooks.slack.com/***" in caplog.text


def test_every_logger_and_level_masks_tokens_keys_and_passwords(restore_logging, caplog):
    install_log_redaction(Settings(
        SLACK_BOT_TOKEN="xoxb-1234-abcd", SLACK_CHANNEL="#alerts", APPLICATIONINSIGHTS_CONNECTION_STRING=f"InstrumentationKey={IKEY};IngestionEndpoint=https://x/",
        kafka_sasl_password="kafka-pass-1", redis_url="redis://:redis-pass-1@cache:6379", _env_file=None,
    ))
    log = logging.getLogger("anything.at.all")
    with caplog.at_level(logging.DEBUG):
        log.debug("token %s, key %s", "xoxb-1234-abcd", IKEY)
        log.warning("export to InstrumentationKey=%s failed", "0000-other-key")
        log.info("sasl %s", {"password": "kafka-pass-1"})
        try:
            raise ConnectionError("AUTH redis-pass-1 rejected by redis://:redis-pass-1@cache:6379")
        except ConnectionError:
            log.exception("redis failed")

    for secret in ("xoxb-1234-abcd", IKEY, "0000-other-key", "kafka-pass-1", "redis-pass-1"):
        assert secret not in caplog.text
    assert "token ***, key ***" in caplog.text
    assert "AUTH *** rejected by redis://:***@cache:6379" in caplog.text
