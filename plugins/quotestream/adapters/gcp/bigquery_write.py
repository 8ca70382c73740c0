"""The load's two TableWriters: BigQuery's Storage Write API (committed streams appended at
explicit offsets, exactly once) and its legacy streaming inserts (insertAll, insert ids).

Storage Write sends rows as protocol buffers whose descriptor is built from the domain's
TableSpec, the schema provisioning creates the tables from: no .proto file to keep in step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.api_core import exceptions as api_exceptions
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient, types
from google.cloud.bigquery_storage_v1.services.big_query_write.transports.grpc import (
    BigQueryWriteGrpcTransport,
)
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from quotestream.domain.quote import now_ms
from quotestream.domain.schemas import Column, TableSpec
from quotestream.ports import Warehouse
from quotestream.ports.writes import NEW, Position, PositionLost, Written

log = logging.getLogger(__name__)

APPEND_ROWS = "/google.cloud.bigquery.storage.v1.BigQueryWrite/AppendRows"
# Under the 4 MB a gRPC server takes by default (the emulator's), BigQuery's own limit is 10.
MAX_REQUEST_BYTES = 3 * 2**20
# A stream is given up (finalized) and the shard opens another after this many rows or this
# long: BigQuery keeps no stream open for ever, and a fresh one bounds what a lost one costs.
MAX_STREAM_ROWS = 10_000_000
MAX_STREAM_AGE_MS = 3_600_000
REQUEST_TIMEOUT_S = 60.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_FIELD_TYPES = {
    "STRING": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    # Supported input types: https://cloud.google.com/bigquery/docs/supported-data-types
    "NUMERIC": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "TIMESTAMP": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "INTEGER": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "FLOAT": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    "BOOLEAN": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "RECORD": descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
}
_AppendRowsRequest = types.AppendRowsRequest.pb()
_AppendRowsResponse = types.AppendRowsResponse.pb()


def _micros(text: str) -> int:
    """An RFC 3339 timestamp as BigQuery's TIMESTAMP input: microseconds since the epoch."""
    return (datetime.fromisoformat(text) - _EPOCH) // _MICROSECOND


def descriptor(name: str, columns: Sequence[Column]) -> descriptor_pb2.DescriptorProto:
    """A self-contained message type for rows of `columns` (records as nested types), in
    proto2 so an absent NULLABLE value is absent, not a zero."""
    message = descriptor_pb2.DescriptorProto(name=name)
    for number, column in enumerate(columns, start=1):
        field = message.field.add(
            name=column.name,
            number=number,
            type=_FIELD_TYPES[column.type],
            label=(
                descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
                if column.mode == "REPEATED"
                else descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
            ),
        )
        if column.type == "RECORD":
            nested = message.nested_type.add()
            nested.CopyFrom(descriptor(f"{column.name.capitalize()}Record", column.fields))
            field.type_name = nested.name
    return message


def _message_class(proto: descriptor_pb2.DescriptorProto) -> Any:
    file = descriptor_pb2.FileDescriptorProto(name=f"{proto.name}.proto", package="quotestream")
    file.message_type.add().CopyFrom(proto)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"quotestream.{proto.name}"))


def _each(convert: Callable[[Mapping[str, Any]], Any]) -> Callable[[Any], list[Any]]:
    return lambda items: [convert(item) for item in items]


def _converter(columns: Sequence[Column]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A row (as the load builds it, in insertAll's JSON form) -> the message's fields."""
    steps: list[tuple[str, Callable[[Any], Any] | None]] = []
    for column in columns:
        if column.type == "TIMESTAMP":
            steps.append((column.name, _micros))
        elif column.type == "RECORD":
            nested = _converter(column.fields)
            steps.append((column.name, _each(nested) if column.mode == "REPEATED" else nested))
        else:
            steps.append((column.name, None))

    def convert(row: Mapping[str, Any]) -> dict[str, Any]:
        return {
            name: value if step is None else step(value)
            for name, step in steps
            if (value := row.get(name)) is not None
        }

    return convert


class TableFormat:
    """One table's rows as Storage Write takes them."""

    def __init__(self, spec: TableSpec) -> None:
        proto = descriptor(spec.name.title().replace("_", ""), spec.columns)
        self.schema = types.ProtoSchema.pb()(proto_descriptor=proto)
        self._message = _message_class(proto)
        self._convert = _converter(spec.columns)

    def serialize(self, row: Mapping[str, Any]) -> bytes:
        serialized: bytes = self._message(**self._convert(row)).SerializeToString()
        return serialized


def _chunks(serialized: list[bytes]) -> Iterator[tuple[int, int]]:
    """[start, end) runs of rows whose request stays under MAX_REQUEST_BYTES."""
    start, size = 0, 0
    for index, row in enumerate(serialized):
        if index > start and size + len(row) > MAX_REQUEST_BYTES:
            yield start, index
            start, size = index, 0
        size += len(row) + 8
    if start < len(serialized):
        yield start, len(serialized)


class StorageWriteTableWriter:
    """TableWriter over application-created COMMITTED streams: each shard appends to its own
    stream at the offsets its position names, so an append BigQuery already has answers
    ALREADY_EXISTS and is not written twice, however long after the first attempt."""

    def __init__(
        self,
        project: str,
        dataset: str,
        specs: Sequence[TableSpec],
        *,
        credentials: Any = None,
        emulator_host: str | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self._parent = f"projects/{project}/datasets/{dataset}/tables"
        self._formats = {spec.name: TableFormat(spec) for spec in specs}
        self._timeout_s = timeout_s
        if emulator_host:
            options = [("grpc.max_send_message_length", 16 * 2**20)]
            transport = BigQueryWriteGrpcTransport(
                channel=grpc.insecure_channel(emulator_host, options=options)
            )
            self._client = BigQueryWriteClient(transport=transport)
        else:
            self._client = BigQueryWriteClient(credentials=credentials)
        # The raw protobuf messages rather than the client's proto-plus wrappers, which copy
        # every serialized row once more on the way out.
        channel = self._client.transport.grpc_channel  # type: ignore[attr-defined]
        self._append_rows = channel.stream_stream(
            APPEND_ROWS,
            request_serializer=_AppendRowsRequest.SerializeToString,
            response_deserializer=_AppendRowsResponse.FromString,
        )
        self._opened: set[str] = set()
        self._finalized: set[str] = set()

    def write(
        self,
        table: str,
        rows: Sequence[Mapping[str, Any]],
        row_ids: Sequence[str],
        at: Position,
    ) -> Written:
        if not rows:
            return Written(next=at)
        table_format = self._formats[table]
        refused: dict[int, list[dict[str, Any]]] = {}
        serialized: list[bytes] = []
        kept: list[int] = []
        for index, row in enumerate(rows):
            try:
                serialized.append(table_format.serialize(row))
                kept.append(index)
            except (TypeError, ValueError) as error:
                refused[index] = [{"reason": "invalid", "message": str(error)}]
        if at.stream and not at.stream.startswith(f"{self._parent}/{table}/streams/"):
            # Not a stream of this table: a position another writer answered (insertAll's),
            # in state a job took over from before the writer was switched.
            raise PositionLost(f"{at.stream} is not a write stream of {table}")
        position = at if at.stream else self._open(table)
        again = True
        for start, end in _chunks(serialized):
            position, chunk_again, chunk_refused = self._append_chunk(
                table_format, position, serialized[start:end]
            )
            again = again and chunk_again
            refused.update({kept[start + index]: errors for index, errors in chunk_refused.items()})
        if position.stream and (
            position.offset >= MAX_STREAM_ROWS or now_ms() - position.opened_ms > MAX_STREAM_AGE_MS
        ):
            self._finalize(position.stream)
            position = NEW
        return Written(next=position, refused=refused, again=again and bool(serialized))

    def _append_chunk(
        self, table_format: TableFormat, at: Position, rows: list[bytes]
    ) -> tuple[Position, bool, dict[int, list[dict[str, Any]]]]:
        """Appends `rows` at `at`; what BigQuery refuses is left out and the rest appended at
        the same offset (a refused row fails its whole request, nothing of it written)."""
        refused: dict[int, list[dict[str, Any]]] = {}
        kept = list(range(len(rows)))
        while kept:
            response = self._append(at, table_format, [rows[index] for index in kept])
            status = grpc.StatusCode.OK
            if response.HasField("error"):
                status = _status_code(response.error.code)
            if status is grpc.StatusCode.OK:
                return Position(at.stream, at.offset + len(kept), at.opened_ms), False, refused
            if status is grpc.StatusCode.ALREADY_EXISTS:
                return Position(at.stream, at.offset + len(kept), at.opened_ms), True, refused
            if response.row_errors:
                bad = {kept[error.index]: error for error in response.row_errors}
                for index, error in bad.items():
                    refused[index] = [
                        {
                            "reason": types.RowError.RowErrorCode(error.code).name,
                            "message": error.message,
                        }
                    ]
                kept = [index for index in kept if index not in bad]
                continue
            if "finalized" in response.error.message.lower():
                return self._after_finalized(at, len(kept), refused)
            # OUT_OF_RANGE (an offset past the stream's end) and the like: this position is
            # not what BigQuery has.
            raise PositionLost(f"{at.stream} at {at.offset}: {response.error.message}")
        return at, False, refused

    def _after_finalized(
        self, at: Position, count: int, refused: dict[int, list[dict[str, Any]]]
    ) -> tuple[Position, bool, dict[int, list[dict[str, Any]]]]:
        """A stream given up after this batch's first attempt wrote to it: its final row count
        says whether the batch is in it (as ALREADY_EXISTS would). If not, the batch goes to a
        new stream, which the caller first asks for what an earlier attempt wrote there."""
        row_count = self._finalize(at.stream)
        if at.offset >= row_count:
            raise PositionLost(f"{at.stream} was finalized at {row_count} rows, before {at.offset}")
        self._finalized.add(at.stream)
        return Position(at.stream, at.offset + count, at.opened_ms), True, refused

    def _append(self, at: Position, table_format: TableFormat, rows: list[bytes]) -> Any:
        request = _AppendRowsRequest(write_stream=at.stream)
        request.offset.value = at.offset
        request.proto_rows.writer_schema.CopyFrom(table_format.schema)
        request.proto_rows.rows.serialized_rows.extend(rows)
        try:
            responses = self._append_rows(
                iter([request]),
                timeout=self._timeout_s,
                metadata=(("x-goog-request-params", f"write_stream={at.stream}"),),
            )
            return next(responses)
        except grpc.RpcError as error:
            if _lost(error):
                raise PositionLost(f"{at.stream}: {error.details()}") from None
            raise api_exceptions.from_grpc_error(error) from None

    def _open(self, table: str) -> Position:
        stream = self._client.create_write_stream(
            parent=f"{self._parent}/{table}",
            write_stream=types.WriteStream(type_=types.WriteStream.Type.COMMITTED),
            timeout=self._timeout_s,
        )
        self._opened.add(stream.name)
        log.info("opened write stream %s", stream.name)
        return Position(stream.name, 0, now_ms())

    def _finalize(self, stream: str) -> int:
        try:
            response = self._client.finalize_write_stream(name=stream, timeout=self._timeout_s)
        except api_exceptions.NotFound:
            return 0
        self._opened.discard(stream)
        log.info("finalized write stream %s at %d rows", stream, response.row_count)
        return int(response.row_count)

    def close(self) -> None:
        """Finalizes the streams this writer opened that are still open: a stream another
        bundle's retry may still name answers for its rows through its final row count."""
        for stream in sorted(self._opened):
            try:
                self._finalize(stream)
            except api_exceptions.GoogleAPICallError as error:
                log.warning("could not finalize %s: %s", stream, error)
        self._client.transport.close()


def _status_code(code: int) -> grpc.StatusCode:
    return next(
        (status for status in grpc.StatusCode if status.value[0] == code), grpc.StatusCode.UNKNOWN
    )


def _lost(error: grpc.RpcError) -> bool:
    """A stream BigQuery does not know (any more): the emulator forgets every stream when it
    restarts and says so as INVALID_ARGUMENT; BigQuery says NOT_FOUND."""
    code = error.code()
    details = str(error.details() or "")
    return code is grpc.StatusCode.NOT_FOUND or (
        code is grpc.StatusCode.INVALID_ARGUMENT and "stream name" in details.lower()
    )


# insertAll has no streams: every batch answers this one position, so that only a shard's
# first batch counts as bound for a new stream (and is looked up first).
INSERT_ALL = Position(stream="insertAll")


class InsertAllTableWriter:
    """TableWriter over legacy streaming inserts: row ids as insert ids, so a batch inserted
    again within about a minute is stored once (BigQuery's best effort). Positions mean
    nothing to it: every batch answers INSERT_ALL."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse

    def write(
        self,
        table: str,
        rows: Sequence[Mapping[str, Any]],
        row_ids: Sequence[str],
        at: Position,
    ) -> Written:
        if not rows:
            return Written(next=INSERT_ALL)
        errors = self._warehouse.insert_rows(table, rows, row_ids)
        return Written(
            next=INSERT_ALL,
            refused={int(error["index"]): list(error.get("errors", [])) for error in errors},
        )

    def close(self) -> None:
        self._warehouse.close()
