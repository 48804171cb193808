"""Configuration at the bottom of every layer: the typed settings object, the client
options built from it, and Kafka topic administration."""
