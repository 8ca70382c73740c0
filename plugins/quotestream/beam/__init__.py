"""Beam's composite transforms around the domain; sources and sinks come in from the caller
(tests feed `Create` or `TestStream` and in-memory fakes, production Pub/Sub and BigQuery)."""
