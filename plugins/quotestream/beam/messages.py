from __future__ import annotations

from typing import Any, NamedTuple


class RawMessage(NamedTuple):
    """A message as it entered the pipeline, before the gate: what the dead-letter table keeps."""

    data: bytes
    attributes: dict[str, str]
    message_id: str | None = None


def from_pubsub(message: Any) -> RawMessage:
    return RawMessage(bytes(message.data), dict(message.attributes or {}), message.message_id)
