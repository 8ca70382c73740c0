"""How the load writes rows to a table, and what "written once" means for each writer.

The load hands a writer one batch at a time from one shard of a table, with the shard's
position: where its previous batch ended. The writer returns the rows it refused and the
position the shard's next batch writes at; the load keeps that position in Beam state, which
Dataflow commits with the bundle's output, so a retried bundle brings the same batch (the
output of a shuffle) to the same position.

What each writer makes of a batch written again at the same position:
- Storage Write (`StorageWriteTableWriter`): nothing. The batch is appended to the shard's own
  committed stream at the position's offset; an offset already written answers
  ALREADY_EXISTS, which is the first attempt's success. Exactly once, however late the retry.
- insertAll (`InsertAllTableWriter`): nothing within BigQuery's insert-id memory, about a
  minute and best effort. Positions mean nothing to it (it answers one constant position).

Neither can tell whether rows reached the table before a job restart (the position is then
gone with the job's state) or before a stream was lost: the load looks those rows up first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Position:
    """Where a shard's next batch goes: a Storage Write stream and the offset of its next
    row. The empty stream is a shard that has none yet (or gave its last one up)."""

    stream: str = ""
    offset: int = 0
    opened_ms: int = 0


NEW = Position()


@dataclass(frozen=True)
class Written:
    """A batch's outcome: `refused` maps the index of each row BigQuery refused to BigQuery's
    reasons (none of those rows is written; every other row is, once); `next` is where the
    shard's next batch goes; `again` says the batch was found written already at its
    position."""

    next: Position
    refused: Mapping[int, list[dict[str, Any]]] = field(default_factory=dict)
    again: bool = False


class PositionLost(Exception):
    """The position cannot be written at any more (a stream BigQuery no longer knows): what an
    earlier attempt of this batch wrote is unknown. The caller looks the batch's rows up and
    writes the rest at NEW."""


class TableWriter(Protocol):
    """Writes the load's rows. Every row of a batch ends either written once or refused
    with BigQuery's reason; a failure of the service itself (unavailable, timed out) raises,
    and the caller retries with the same batch at the same position."""

    def write(
        self,
        table: str,
        rows: Sequence[Mapping[str, Any]],
        row_ids: Sequence[str],
        at: Position,
    ) -> Written:
        """Write `rows` (`row_ids` name them) to `table` at `at`; raises PositionLost."""

    def close(self) -> None:
        """Give up every stream still open (finalize it) and release the clients."""
