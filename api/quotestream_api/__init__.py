"""The market-data API: a deterministic market simulator and the push relay, on Cloud Run."""
