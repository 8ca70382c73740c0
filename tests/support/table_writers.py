"""An in-memory TableWriter with Storage Write's offset rules, over an InMemoryWarehouse whose
rows it keeps without dedup: a row written twice shows as two rows."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quotestream.ports.writes import Position, PositionLost, Written
from tests.support.fakes import InMemoryWarehouse

_NAMES = itertools.count()


@dataclass
class InMemoryTableWriter:
    """Streams by name, each with its row count. `forget_streams()` is the emulator
    restarting; `unavailable` writes fail first, as a BigQuery away would."""

    warehouse: InMemoryWarehouse = field(default_factory=InMemoryWarehouse)
    streams: dict[str, int] = field(default_factory=dict)
    unavailable: int = 0
    requests: list[int] = field(default_factory=list)

    def write(
        self,
        table: str,
        rows: Sequence[Mapping[str, Any]],
        row_ids: Sequence[str],
        at: Position,
    ) -> Written:
        if self.unavailable > 0:
            self.unavailable -= 1
            raise ConnectionError("BigQuery does not answer")
        if at.stream and at.stream not in self.streams:
            raise PositionLost(f"{at.stream} is not known")
        stream = at.stream or f"{table}/streams/{next(_NAMES)}"
        count = self.streams.setdefault(stream, 0)
        if at.offset < count:
            return Written(Position(stream, at.offset + len(rows)), again=True)
        if at.offset > count:
            raise PositionLost(f"offset {at.offset} is beyond the end of {stream}")
        self.requests.append(len(rows))
        errors = self.warehouse.insert_rows(table, [dict(row) for row in rows])
        refused = {int(error["index"]): error["errors"] for error in errors}
        self.streams[stream] = count + len(rows) - len(refused)
        return Written(Position(stream, self.streams[stream]), refused=refused)

    def forget_streams(self) -> None:
        self.streams.clear()

    def close(self) -> None:
        pass


# Streams are BigQuery's, not a client's: every writer over one warehouse shares them.
_STREAMS: dict[int, dict[str, int]] = {}


def table_writer_of(warehouse_factory: Callable[[], InMemoryWarehouse]) -> InMemoryTableWriter:
    """A writer over the warehouse `warehouse_factory` gives (each DoFn instance builds its
    own, as each builds its own client of BigQuery)."""
    warehouse = warehouse_factory()
    return InMemoryTableWriter(warehouse, _STREAMS.setdefault(id(warehouse), {}))
