"""Local Kafka (single-node KRaft, jars from Maven Central) and Redis for development and
integration tests, run as detached processes whose state lives under ``settings.home``."""
from __future__ import annotations


class ServiceError(RuntimeError):
    """A local service cannot be started or stopped; the first line says what to do."""


# Imported after ServiceError: the service modules import it from this package.
from badbuzz.services.manager import ServiceState, down, status, up  # noqa: E402

__all__ = ["ServiceError", "ServiceState", "down", "status", "up"]
