"""The ports implemented: Google Cloud (gcp/), this machine (local/), the API client, alerts."""
