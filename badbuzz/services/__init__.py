"""Local Kafka (single-node KRaft, jars from Maven Central) and Redis for development and
integration tests, run as detached processes whose state lives under ``settings.home``."""
from badbuzz.services.errors import ServiceError
from badbuzz.services.manager import ServiceState, down, status, up

__all__ = ["ServiceError", "ServiceState", "down", "status", "up"]
