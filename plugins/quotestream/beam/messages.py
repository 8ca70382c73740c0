from __future__ import annotations

from typing import Any, NamedTuple


class Receipt(NamedTuple):
    """How to acknowledge a pulled message once what it became is stored."""

    ack_id: str
    # True unless Pub/Sub says this is the first delivery: the message may have been stored
    # by an earlier delivery, longer ago than BigQuery's insert-id dedup remembers.
    redelivered: bool


class RawMessage(NamedTuple):
    """A message as it entered the pipeline, before the gate: what the dead-letter table keeps."""

    data: bytes
    attributes: dict[str, str]
    message_id: str | None = None
    # Only when the pipeline acknowledges messages itself (the local pull source).
    receipt: Receipt | None = None


class Tracked(NamedTuple):
    """A value derived from one message (its quote, its row), with that message's receipt, so
    the message is acknowledged only after the row is written."""

    value: Any
    receipt: Receipt | None = None


def from_pubsub(message: Any) -> RawMessage:
    return RawMessage(bytes(message.data), dict(message.attributes or {}), message.message_id)
