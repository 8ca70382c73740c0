"""Local stand-ins of the Google APIs quotestream calls beyond Pub/Sub and BigQuery (emulated)."""
