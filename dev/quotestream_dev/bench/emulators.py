"""The emulators a bench starts for itself, on free ports, logging into its work directory."""

from __future__ import annotations

from pathlib import Path

from quotestream.adapters.local.processes import ServiceProcess, free_port


def start_emulators(work: Path, repo_root: Path, services: list[ServiceProcess]) -> dict[str, str]:
    """Starts the Pub/Sub and BigQuery emulators, adding each to `services` as it starts (the
    caller stops them, even when the second fails); returns the environment that targets
    them, without a project."""
    from quotestream.adapters.local.bigquery_emulator import (
        emulator_environment,
        start_bigquery_emulator,
    )
    from quotestream.adapters.local.pubsub_emulator import start_pubsub_emulator

    pubsub = start_pubsub_emulator(free_port(), work / "pubsub.log")
    services.append(pubsub)
    bigquery = start_bigquery_emulator(
        repo_root, free_port(), work / "bigquery.log", work / "bigquery-data", "bench"
    )
    services.append(bigquery)
    return {
        "PUBSUB_EMULATOR_HOST": pubsub.address,
        **emulator_environment(bigquery),
        "QUOTESTREAM_TARGET": "local",
        # The emulator cannot dead-letter from an ordered subscription.
        "QUOTESTREAM_MESSAGE_ORDERING": "false",
    }
