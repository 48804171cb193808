"""The console: a web service for people and an HTTP API (``badbuzz console``)."""
