"""The alert policies as data, and the thresholds they share with the local health verdict."""

from __future__ import annotations

import pytest

from quotestream.beam.load import QUOTE_ROWS
from quotestream.beam.parse import ParseQuoteFn
from quotestream.beam.sinks import WriteShardFn
from quotestream.domain.alerting import AlertPolicySpec, alert_policies
from quotestream.domain.thresholds import AlertThresholds
from quotestream.services.streaming import JOB_NAMES, HealthLimits

pytestmark = pytest.mark.unit

CHANNELS = ("projects/p/notificationChannels/1",)
# The local verdict's name for each threshold it judges by.
LOCAL_TWINS = {
    "max_data_freshness_s": "max_staleness_s",
    "max_dead_letter_ratio": "max_dead_letter_ratio",
    "max_oldest_unacked_s": "max_oldest_unacked_s",
    "max_undelivered_messages": "max_undelivered_messages",
}


def policies(thresholds: AlertThresholds) -> tuple[AlertPolicySpec, ...]:
    return alert_policies(thresholds, JOB_NAMES, "quotes-load", "quotestream-api", CHANNELS)


def distinct_thresholds() -> AlertThresholds:
    """Every threshold a value of its own, none the default: a policy or a limit reading the
    wrong one, or a constant, shows."""
    names = AlertThresholds.names()
    return AlertThresholds().overridden({name: 1000.5 + i for i, name in enumerate(names)})


def test_the_policies_cover_each_job_the_subscription_the_dead_letters_and_the_api() -> None:
    specs = policies(AlertThresholds())
    assert [spec.key for spec in specs] == [
        "extract-system-lag",
        "extract-data-freshness",
        "load-system-lag",
        "load-data-freshness",
        "subscription-backlog",
        "oldest-unacked",
        "load-dead-letter-rate",
        "api-5xx-rate",
        "extract-on-fallback",
    ]
    assert len({spec.display_name for spec in specs}) == len(specs)
    assert all(spec.display_name.startswith("quotestream: ") for spec in specs)
    assert all(spec.notification_channels == CHANNELS for spec in specs)
    by_key = {spec.key: spec for spec in specs}
    assert 'resource.labels.job_name = "quotestream-extract"' in (
        by_key["extract-data-freshness"].metric_filter
    )
    assert "job/data_watermark_age" in by_key["extract-data-freshness"].metric_filter
    assert (
        'resource.labels.subscription_id = "quotes-load"' in by_key["oldest-unacked"].metric_filter
    )
    api = by_key["api-5xx-rate"].metric_filter
    assert 'resource.labels.service_name = "quotestream-api"' in api
    assert 'metric.labels.response_code_class = "5xx"' in api
    assert by_key["api-5xx-rate"].aggregation.aligner == "ALIGN_RATE"


def test_each_policy_takes_its_threshold_from_the_thresholds_it_names() -> None:
    thresholds = distinct_thresholds()
    for spec in policies(thresholds):
        if spec.duration_name:
            assert spec.duration_s == int(getattr(thresholds, spec.duration_name)), spec.key
            assert spec.threshold == 0, spec.key
        else:
            assert spec.threshold == getattr(thresholds, spec.threshold_name), spec.key


def test_the_fallback_alert_counts_the_pairs_that_read_the_fallback_now() -> None:
    (spec,) = [p for p in policies(AlertThresholds()) if p.key == "extract-on-fallback"]
    assert 'metric_name="source_failovers"' in spec.promql
    assert 'metric_name="source_failbacks"' in spec.promql
    assert 'job_name="quotestream-extract"' in spec.promql
    assert (spec.threshold, spec.duration_s) == (0, 600)


def test_the_local_verdict_judges_by_the_same_numbers_as_the_policies_it_has_a_twin_of() -> None:
    thresholds = distinct_thresholds()
    limits = HealthLimits(thresholds)
    twins = [spec for spec in policies(thresholds) if spec.judged_locally]
    assert {spec.threshold_name for spec in twins} == set(LOCAL_TWINS)
    for spec in twins:
        assert getattr(limits, LOCAL_TWINS[spec.threshold_name]) == spec.threshold, spec.key


def test_the_dead_letter_alert_judges_the_local_verdicts_window_from_the_jobs_counters() -> None:
    thresholds = distinct_thresholds()
    (share,) = [spec for spec in policies(thresholds) if spec.key == "load-dead-letter-rate"]
    window_s = HealthLimits(thresholds).window_s
    assert window_s == int(thresholds.dead_letter_window_s)
    # Increases over the window, not the running totals since the job started.
    assert share.promql.count(f"[{window_s}s]") == 2
    assert share.promql.count("sum(delta(") == 2
    numerator, denominator = share.promql.split(" / ")
    # What the gate dead-lettered and what BigQuery refused, over what the job received: the
    # counters' names as the load job keeps them.
    parse = ParseQuoteFn()
    refused = WriteShardFn(
        QUOTE_ROWS, writer_factory=lambda: None, lookups_factory=lambda: None
    ).rejected
    assert f'metric_name=~"{parse.dead_lettered.metric_name.name}|' in numerator
    assert f'|{refused.metric_name.name}"' in numerator
    assert f'metric_name=~"{parse.received.metric_name.name}"' in denominator


def test_changing_one_threshold_moves_the_policy_and_the_local_limit_together() -> None:
    before = AlertThresholds()
    after = before.overridden({"max_oldest_unacked_s": 42.0})
    (policy,) = [spec for spec in policies(after) if spec.key == "oldest-unacked"]
    assert policy.threshold == HealthLimits(after).max_oldest_unacked_s == 42.0
    changed = {a.key for a, b in zip(policies(before), policies(after), strict=True) if a != b}
    assert changed == {"oldest-unacked"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_lag": 1.0}, "unknown alert thresholds max_lag; known: max_system_lag_s"),
        ({"max_oldest_unacked_s": 0.0}, "must be positive: max_oldest_unacked_s"),
    ],
)
def test_overrides_are_checked(overrides: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AlertThresholds().overridden(overrides)
