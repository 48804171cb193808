"""The one error the local services raise."""


class ServiceError(RuntimeError):
    """A local service cannot be started or stopped; the first line says what to do."""
