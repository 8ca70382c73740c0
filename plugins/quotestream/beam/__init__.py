"""Beam transforms wrapping the domain. Sources and sinks are passed in: tests feed `Create` or
`TestStream` and an in-memory warehouse, production feeds Pub/Sub and BigQuery."""
