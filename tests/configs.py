"""The narrow configs as the worker builds them from ``Settings``, over its declared
defaults rather than whatever ``BADBUZZ_*`` the shell running the tests has set, with the
overrides a test spells out."""
from __future__ import annotations

from dataclasses import replace

from alerting.escalation import AlertContent
from alerting.rules import RuleConfig
from config.settings import Settings

DEFAULTS = Settings.model_construct()
CONTENT = AlertContent.from_settings(DEFAULTS)


def rule_config(**overrides) -> RuleConfig:
    return replace(RuleConfig.from_settings(DEFAULTS), **overrides)
