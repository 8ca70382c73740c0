"""The market-data API on Cloud Run: the simulated market's quotes and the push relay to Pub/Sub."""
