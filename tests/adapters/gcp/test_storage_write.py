"""The Storage Write writer against the BigQuery emulator's gRPC server: the offset rules that
make a retried append harmless, refused rows with BigQuery's reason, and a lost stream."""

from __future__ import annotations

from typing import Any

import pytest

from quotestream import bootstrap
from quotestream.adapters.gcp.bigquery_write import INSERT_ALL, StorageWriteTableWriter
from quotestream.adapters.local.processes import ServiceProcess
from quotestream.domain.quote import now_ms
from quotestream.domain.schemas import LOADED_TABLES, QUOTE_BARS_1M, QUOTES, QUOTES_DEAD_LETTER
from quotestream.ports import Warehouse
from quotestream.ports.writes import NEW, Position, PositionLost
from quotestream.settings import Settings
from tests.support.local_runs import fresh_warehouse
from tests.support.rows import dead_letter_at, quote_at

pytestmark = pytest.mark.integration


@pytest.fixture
def target(
    bigquery_emulator: ServiceProcess,
) -> tuple[Settings, Warehouse, StorageWriteTableWriter]:
    settings, warehouse = fresh_warehouse("storage-write", LOADED_TABLES)
    writer = bootstrap.build_table_writer(
        settings.model_copy(update={"bigquery_writer": "storage_write"})
    )
    assert isinstance(writer, StorageWriteTableWriter)
    yield settings, warehouse, writer
    writer.close()


def stored_ids(warehouse: Warehouse, table: str = QUOTES.name) -> list[str]:
    column = "event_id" if table == QUOTES.name else "message_id"
    return sorted(
        row["id"] for row in warehouse.query(f"SELECT {column} AS id FROM {{dataset}}.{table}")
    )


def quotes(count: int, start_ms: int | None = None) -> list[dict[str, Any]]:
    start = start_ms or now_ms() - 60_000
    return [quote_at(start + index) for index in range(count)]


def write(writer: StorageWriteTableWriter, rows: list[dict[str, Any]], at: Position) -> Any:
    return writer.write(QUOTES.name, rows, [row["event_id"] for row in rows], at)


def test_an_append_repeated_at_its_offset_is_success_and_writes_nothing(target: Any) -> None:
    _, warehouse, writer = target
    first, second = quotes(3), quotes(2, now_ms() - 30_000)

    after_first = write(writer, first, NEW)
    after_second = write(writer, second, after_first.next)
    # A retried bundle: the same batches at the same positions, in any order.
    again_second = write(writer, second, after_first.next)
    again_first = write(writer, first, Position(after_first.next.stream, 0))

    assert after_first.next.offset == 3
    assert after_second.next.offset == 5
    assert not after_first.again
    assert not after_second.again
    assert again_second.again
    assert again_first.again
    assert again_second.next == after_second.next
    assert stored_ids(warehouse) == sorted(row["event_id"] for row in first + second)


def test_an_offset_past_the_end_is_a_lost_position_and_writes_nothing(target: Any) -> None:
    _, warehouse, writer = target
    after = write(writer, quotes(2), NEW)

    with pytest.raises(PositionLost, match="beyond the end"):
        write(writer, quotes(1, now_ms() - 10_000), Position(after.next.stream, 5))

    assert len(stored_ids(warehouse)) == 2


def test_a_stream_the_service_does_not_know_is_a_lost_position(target: Any) -> None:
    settings, _, writer = target
    unknown = f"projects/{settings.project}/datasets/{settings.dataset}/tables/quotes/streams/gone"

    with pytest.raises(PositionLost):
        write(writer, quotes(1), Position(unknown, 0))


def test_a_position_of_another_writer_or_table_is_lost_and_writes_nothing(target: Any) -> None:
    """State a job took over from before its writer was switched holds insertAll's position;
    a stream of another table is no place for these rows either."""
    _, warehouse, writer = target
    dead_letters = writer.write(
        QUOTES_DEAD_LETTER.name, [dead_letter_at(now_ms())], ["dl-1"], NEW
    ).next

    for elsewhere in (INSERT_ALL, dead_letters):
        with pytest.raises(PositionLost, match="not a write stream of quotes"):
            write(writer, quotes(1), elsewhere)

    assert stored_ids(warehouse) == []


def test_refused_rows_come_back_with_bigquerys_reason_and_the_rest_is_written(
    target: Any,
) -> None:
    _, warehouse, writer = target
    rows = quotes(4)
    # A NUMERIC BigQuery cannot read, and a REQUIRED column missing.
    rows[1] = {**rows[1], "bid": "not a number"}
    rows[3] = {key: value for key, value in rows[3].items() if key != "pair"}

    written = write(writer, rows, NEW)

    assert sorted(written.refused) == [1, 3]
    for errors in written.refused.values():
        assert errors
        assert errors[0]["reason"]
        assert errors[0]["message"]
    assert written.next.offset == 2
    assert stored_ids(warehouse) == sorted([rows[0]["event_id"], rows[2]["event_id"]])
    # Retried at its offset, the batch is found there: BigQuery does not say that two of its
    # rows were refused (the load looks them up, tests/beam/test_storage_write_sink.py).
    again = write(writer, rows, Position(written.next.stream, 0))
    assert again.again
    assert not again.refused
    assert len(stored_ids(warehouse)) == 2


def test_a_finalized_stream_answers_for_the_rows_it_holds(target: Any) -> None:
    _, warehouse, writer = target
    batch = quotes(3)
    after = write(writer, batch, NEW)
    writer._finalize(after.next.stream)

    again = write(writer, batch, Position(after.next.stream, 0))
    # A batch past its final row count is not in it, and goes to a new stream, which the
    # load first asks for what an earlier attempt wrote (tests/beam/test_sinks.py).
    with pytest.raises(PositionLost, match="finalized at 3 rows"):
        write(writer, quotes(2, now_ms() - 20_000), after.next)

    assert again.again
    assert again.next == NEW
    assert len(stored_ids(warehouse)) == 3


def test_dead_letters_and_bars_are_written_with_their_nested_and_typed_columns(
    target: Any,
) -> None:
    _, warehouse, writer = target
    now = now_ms()
    letters = [dead_letter_at(now, f"m{index}") for index in range(3)]
    bar = {
        "pair": "EUR-USD",
        "window_start": "2026-12-07T10:00:00.000Z",
        "window_end": "2026-12-07T10:01:00.000Z",
        "open": "1.1",
        "high": "1.2",
        "low": "1.0",
        "close": "1.15",
        "tick_count": 4,
        "pane": "ON_TIME:0",
        "pane_index": 0,
    }

    writer.write(QUOTES_DEAD_LETTER.name, letters, [row["message_id"] for row in letters], NEW)
    writer.write(QUOTE_BARS_1M.name, [bar], ["bar"], NEW)

    (stored_bar,) = warehouse.query(
        "SELECT pair, tick_count, pane_index, close, window_start FROM {dataset}.quote_bars_1m"
    )
    assert stored_bar["tick_count"] == 4
    assert str(stored_bar["close"]) == "1.15"
    assert stored_bar["window_start"].isoformat().startswith("2026-12-07T10:00:00")
    attributes = warehouse.query(
        "SELECT message_id, a.key AS key, a.value AS value, received_ts "
        "FROM {dataset}.quotes_dead_letter, UNNEST(attributes) AS a"
    )
    assert sorted(row["message_id"] for row in attributes) == ["m0", "m1", "m2"]
    assert {(row["key"], row["value"]) for row in attributes} == {("origin", "test")}
    assert all(
        row["received_ts"].year == 2026 or row["received_ts"].year > 2026 for row in attributes
    )
