"""Dead-letter replay on the BigQuery emulator: the SQL finds the dead letters and the
verdicts, the quote that now parses is inserted once, and a second run changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from quotestream import bootstrap
from quotestream.domain.schemas import QUOTES, QUOTES_DEAD_LETTER
from quotestream.services.replay import ReplayCounts
from tests.support.dead_letters import FIXED_PAIRS, DeadLetters

pytestmark = pytest.mark.integration

REASONS = ("unknown_pair", "malformed_json")


def test_replay_inserts_what_now_parses_once_and_changes_nothing_the_second_time(
    provisioned: Any,
) -> None:
    settings = provisioned("replay", FIXED_PAIRS)
    warehouse = bootstrap.build_warehouse(settings)
    letters = DeadLetters()
    assert warehouse.insert_rows(QUOTES_DEAD_LETTER.name, letters.rows, letters.ids) == []
    warehouse.load_rows(QUOTES.name, QUOTES, [letters.loaded_quote])
    service = bootstrap.build_replay_service(settings)

    def table_sizes() -> dict[str, int]:
        return {
            table: int(warehouse.query(f"SELECT COUNT(*) AS n FROM {{dataset}}.{table}")[0]["n"])
            for table in ("quotes", "quotes_dead_letter", "dead_letter_replays")
        }

    dry = service.run(letters.start, letters.end, REASONS, "dry", dry_run=True)
    assert dry == ReplayCounts(3, 1, 1, 1, 0, dry_run=True)
    assert table_sizes() == {"quotes": 1, "quotes_dead_letter": 4, "dead_letter_replays": 0}

    first = service.run(letters.start, letters.end, REASONS, "first", dry_run=False)
    assert first == ReplayCounts(3, 1, 1, 1, 0, dry_run=False)
    assert table_sizes() == {"quotes": 2, "quotes_dead_letter": 4, "dead_letter_replays": 3}
    replayed = warehouse.query(
        "SELECT q.event_id FROM {dataset}.quotes AS q JOIN {dataset}.dead_letter_replays AS r "
        "ON q.event_id = r.event_id WHERE r.outcome = 'replayed' ORDER BY 1"
    )
    assert [row["event_id"] for row in replayed] == sorted(
        [letters.new_quote["event_id"], letters.loaded_quote["event_id"]]
    )

    second = service.run(letters.start, letters.end, REASONS, "second", dry_run=False)
    assert second == ReplayCounts(3, 0, 0, 0, 3, dry_run=False)
    assert table_sizes() == {"quotes": 2, "quotes_dead_letter": 4, "dead_letter_replays": 3}
