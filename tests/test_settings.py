from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from quotestream import bootstrap
from quotestream.bootstrap import ConfigurationError
from quotestream.settings import Settings
from tests.support.secrets import MARKER, REFUSED_SECRETS

pytestmark = pytest.mark.unit


def test_pairs_come_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUOTESTREAM_PAIRS", "usd-brl, BTC-USD")
    assert Settings().pairs == ("USD-BRL", "BTC-USD")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"pairs": "USD-BRL,XAU-USD"}, "unknown pairs XAU-USD"),
        ({"api_key": ""}, "at least 16 characters"),
        ({"api_key": "short"}, "at least 16 characters"),
        ({"api_key": "a-good-key-of-16-chars,"}, "at least 16 characters"),
        ({"replay_max_range_h": 0}, "greater than 0"),
        ({"relay_capacity": 10, "relay_max_batch": 20}, "could never be accepted"),
        ({"target": "gcp"}, "target gcp needs QUOTESTREAM_PROJECT"),
        ({"api_invokers": "allUsers"}, "would make the API public"),
        ({"api_invokers": "quotestream@p.iam"}, "is not an IAM member"),
        ({"google_api_endpoints": {"dataflows": "https://x"}}, "unknown APIs dataflows"),
        ({"google_api_endpoints": {"run": "http://10.0.0.1:80"}}, "only to a loopback"),
        ({"impersonation_chains": {"bq": ["a@p.iam"]}}, "unknown APIs bq"),
        ({"alert_notification_channels": "123"}, "not a notification channel's resource name"),
        ({"alert_thresholds": {"max_lag_s": 1}}, "unknown alert thresholds max_lag_s"),
        ({"alert_thresholds": {"max_system_lag_s": -1}}, "must be positive: max_system_lag_s"),
        ({"alert_thresholds": {"max_interval_dead_letter_ratio": 0.1}}, "unknown alert thresh"),
        ({"quality_thresholds": {"max_dead_letter_ratio": 0.1}}, "unknown quality thresholds"),
        ({"quality_thresholds": {"freshness_s": -1}}, "must not be negative: freshness_s"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)


def test_every_secret_setting_has_refused_values_to_test() -> None:
    assert set(REFUSED_SECRETS) == Settings.secret_fields()


@pytest.mark.parametrize(
    ("name", "value"),
    [(name, value) for name, values in REFUSED_SECRETS.items() for value in values],
)
def test_a_refused_secret_is_never_repeated_in_the_error(name: str, value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**{name: value})
    assert MARKER not in str(refused.value)
    assert MARKER not in repr(refused.value)


def test_a_refused_secret_from_the_environment_is_not_repeated_either(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QUOTESTREAM_API_KEY", f"a-good-key-of-16-chars,{MARKER}")
    with pytest.raises(ValidationError, match="at least 16 characters") as refused:
        Settings()
    assert MARKER not in str(refused.value)


def test_the_relay_takes_several_keys_comma_separated() -> None:
    settings = Settings(api_key="producer-one-key-0001, producer-two-key-0002")
    assert settings.relay_keys() == ("producer-one-key-0001", "producer-two-key-0002")
    assert Settings().relay_keys() == ()


def test_alerting_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    channels = "projects/p/notificationChannels/1, projects/p/notificationChannels/2"
    monkeypatch.setenv("QUOTESTREAM_ALERT_NOTIFICATION_CHANNELS", channels)
    monkeypatch.setenv("QUOTESTREAM_ALERT_THRESHOLDS", '{"max_oldest_unacked_s": 900}')
    settings = Settings()
    assert settings.alert_notification_channels == (
        "projects/p/notificationChannels/1",
        "projects/p/notificationChannels/2",
    )
    assert settings.thresholds().alerting.max_oldest_unacked_s == 900.0


def test_quality_thresholds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUOTESTREAM_QUALITY_THRESHOLDS", '{"max_missing_ticks": 3}')
    thresholds = Settings().thresholds()
    assert thresholds.quality.max_missing_ticks == 3
    assert thresholds.quality.min_volume_ratio == 0.9
    assert thresholds.alerting.max_dead_letter_ratio == 0.05


def test_workers_get_every_setting_but_the_relay_key() -> None:
    settings = Settings(
        target="gcp",
        project="p",
        api_url="https://quotestream-api-123.a.run.app",
        api_key="k" * 16,
        bigquery_location="EU",
        message_ordering=False,
        market_seed=7,
        quote_source="sim-b",
        pairs=("BTC-USD",),
    )
    on_a_worker = Settings(**json.loads(settings.for_workers()))
    assert on_a_worker.api_key is None
    assert on_a_worker == settings.model_copy(update={"api_key": None})


def test_workers_act_as_themselves_not_through_airflow_s_impersonation() -> None:
    settings = Settings(
        target="gcp",
        project="p",
        gcp_connection_id="composer_google",
        impersonation_chains={"dataflow": ("quotestream-composer@p.iam.gserviceaccount.com",)},
    )
    on_a_worker = json.loads(settings.for_workers())
    assert "impersonation_chains" not in on_a_worker
    assert "gcp_connection_id" not in on_a_worker


@pytest.mark.parametrize(
    "api_url",
    [
        "http://127.0.0.1:8080",
        "http://127.0.0.2:8080",
        "http://0.0.0.0:8080",
        "http://localhost:8080",
        "http://quotestream-api-123.a.run.app",
    ],
)
def test_on_gcp_the_api_is_never_called_at_a_loopback_or_plain_http_address(
    api_url: str,
) -> None:
    with pytest.raises(ConfigurationError, match="QUOTESTREAM_API_URL"):
        bootstrap.build_quote_source(Settings(target="gcp", project="p", api_url=api_url))


def test_google_access_settings_come_as_json_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QUOTESTREAM_IMPERSONATION_CHAINS", '{"dataflow": "a@p.iam, b@p.iam"}')
    monkeypatch.setenv("QUOTESTREAM_GOOGLE_API_ENDPOINTS", '{"run": "http://127.0.0.1:9"}')
    monkeypatch.setenv("QUOTESTREAM_API_INVOKERS", "serviceAccount:c@p.iam, user:d@example.com")
    settings = Settings()
    assert settings.impersonation_chains == {"dataflow": ("a@p.iam", "b@p.iam")}
    assert settings.google_api_endpoints == {"run": "http://127.0.0.1:9"}
    assert settings.api_invokers == ("serviceAccount:c@p.iam", "user:d@example.com")


def test_the_write_shards_default_to_one_locally_and_four_on_google_cloud() -> None:
    """The local runner writes on one thread: more shards would only mean more requests."""
    assert Settings(target="local").write_shards() == 1
    assert Settings(target="gcp", project="p").write_shards() == 4
    assert Settings(target="local", bigquery_write_shards=3).write_shards() == 3
