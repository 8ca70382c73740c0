"""What every DAG shares: default arguments, the failure and deadline alerts, asset names.

Imported by DAG files at parse time, so it stays light: Airflow and the adapters are
imported inside the functions that run in tasks and callbacks.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import Any, NoReturn

from quotestream.ports import Notifier

log = logging.getLogger(__name__)

OWNER = "quotestream"
# Asset URIs: producers emit events on them, consumers are scheduled on them.
RESOURCES_ASSET_URI = "quotestream://resources"


def table_asset_uri(table: str) -> str:
    """The google provider's bigquery://PROJECT/DATASET/TABLE, which Composer's lineage
    understands; project and dataset as a DAG file reads them when parsed."""
    return f"bigquery://{_parse_time('project')}/{_parse_time('dataset')}/{table}"


def _parse_time(setting: str) -> str:
    """A Settings field as a DAG file may read it when parsed: its environment variable or its
    default, without validating the others (a DAG file must import even when they are wrong)."""
    from quotestream.settings import Settings

    default = Settings.model_fields[setting].default
    return os.environ.get(f"QUOTESTREAM_{setting.upper()}", str(default))


def fail_without_retry(message: str) -> NoReturn:
    """Fail the task for good, skipping its retries: a verdict, not an outage."""
    raise _task_exception("AirflowFailException")(message)


def reschedule_at(moment: datetime) -> NoReturn:
    """Give the task's slot back and run it again at `moment`."""
    raise _task_exception("AirflowRescheduleException")(moment)


def _task_exception(name: str) -> Any:
    # Airflow 3.2 moved these to the task SDK and deprecated the old place; 3.1, which
    # Composer offers, has them only there. The one version branch the DAGs need.
    from airflow.sdk import exceptions as task_sdk

    if hasattr(task_sdk, name):
        return getattr(task_sdk, name)
    from airflow import exceptions as before_3_2

    return getattr(before_3_2, name)


def default_args(**overrides: Any) -> dict[str, Any]:
    return {
        "owner": OWNER,
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "on_failure_callback": alert_on_failure,
        **overrides,
    }


def alert_on_failure(context: Any) -> None:
    """Tell people a task failed for good (after its retries)."""
    ti = context.get("ti")
    where = f"{getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')}"
    _alert(
        f"quotestream: {where} failed",
        f"run {getattr(ti, 'run_id', '?')}, try {getattr(ti, 'try_number', '?')}\n"
        f"{context.get('exception')!r}",
    )


def run_deadline(setting: str) -> timedelta:
    """How long a run of a DAG may take (`setting`, a Settings field in seconds), read at parse
    time from the environment alone, as the asset URIs are. The DAG's `dagrun_timeout`: the
    scheduler fails a run still unfinished then, and `alert_on_missed_deadline` says so.

    Not Airflow 3's DeadlineAlert: in Airflow 3.3.2 any DAG that has one makes `airflow dags
    test` fail once the run succeeds ('dict' object has no attribute 'hex', apache/airflow
    issue 73428), which would break every test run of these DAGs, operators' included."""
    seconds = int(_parse_time(setting))
    if seconds < 1:
        raise ValueError(
            f"QUOTESTREAM_{setting.upper()} must be at least 1 (seconds), not {seconds}"
        )
    return timedelta(seconds=seconds)


def alert_on_missed_deadline(context: Any) -> None:
    """The DAG's failure callback: tell people a run was stopped for taking longer than its
    `dagrun_timeout`. Failures of a task have alerted already (`alert_on_failure`)."""
    if context.get("reason") != "timed_out":
        return
    # The DAG processor passes the run itself only when the run has a task instance.
    dag, run = context.get("dag"), context.get("dag_run")
    started = f" ({run.start_date})" if getattr(run, "start_date", None) else ""
    _alert(
        f"quotestream: {getattr(dag, 'dag_id', '?')} missed its deadline",
        f"run {context.get('run_id') or getattr(run, 'run_id', '?')} not finished "
        f"{_seconds(getattr(dag, 'dagrun_timeout', None))} after it started{started}; the "
        "scheduler stopped it. The DAG is idempotent: clear the run, or let the next one "
        "repeat its work.",
    )


def _seconds(timeout: timedelta | None) -> str:
    return "?" if timeout is None else f"{timeout.total_seconds():.0f} s"


def _alert(subject: str, body: str) -> None:
    """Never raises: a broken alert channel must not hide what it reports; it is logged."""
    log.warning("%s: %s", subject, body)
    try:
        # Not Settings(): the task may have failed precisely because the settings are invalid.
        connection_id = os.environ.get("QUOTESTREAM_ALERTS_CONNECTION_ID", "quotestream_alerts")
        channels = notifiers(connection_id)
    except Exception:
        log.exception("could not build the alert channels; the alert is only in the log")
        return
    for notifier in channels:
        try:
            notifier.notify(subject, body)
        except Exception:
            log.exception("alert through %s failed", type(notifier).__name__)


def notifiers(connection_id: str) -> list[Notifier]:
    """From an Airflow connection: extra.webhook_url (Slack-compatible) and, when
    extra.email_to is set, SMTP through extra.smtp_host/smtp_port (587) with login/password,
    over verified STARTTLS (extra.smtp_ca_file for a private CA; extra.smtp_starttls false
    only for a relay on a trusted network, and then without a password)."""
    from airflow.sdk import BaseHook

    from quotestream.adapters.notify import SUBMISSION_PORT, SmtpNotifier, WebhookNotifier

    try:
        connection = BaseHook.get_connection(connection_id)
    except Exception:
        log.warning("no connection %s: failure alerts go to the task log only", connection_id)
        return []
    extra = connection.extra_dejson
    found: list[Notifier] = []
    if extra.get("webhook_url"):
        found.append(WebhookNotifier(extra["webhook_url"]))
    if extra.get("email_to"):
        recipients = extra["email_to"]
        found.append(
            SmtpNotifier(
                extra.get("smtp_host", "localhost"),
                int(extra.get("smtp_port", SUBMISSION_PORT)),
                extra.get("email_from", "quotestream@localhost"),
                [recipients] if isinstance(recipients, str) else recipients,
                connection.login,
                connection.password,
                starttls=str(extra.get("smtp_starttls", True)).lower() not in {"false", "0"},
                ca_file=extra.get("smtp_ca_file"),
            )
        )
    return found


def data_interval(start: Any, end: Any) -> tuple[Any, Any]:
    """The run's data interval, or a clear error for runs that have none (manual runs without
    a logical date, asset-triggered runs)."""
    if start is None or end is None or end <= start:
        raise ValueError(
            "this DAG works on a data interval: trigger it with a logical date, or let the "
            "schedule or `airflow backfill create` make its runs"
        )
    return start, end
