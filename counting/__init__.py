"""Event-time windows and the Redis counters kept per minute and scope: what the stream
counts and what the alerting rule reads."""
