from __future__ import annotations

from typing import Any, NamedTuple

from quotestream.domain.quote import Quote


class RawMessage(NamedTuple):
    """A message as it entered the pipeline, before the gate: what the dead-letter table keeps.

    `judged` is the quote the gate made of it when asked without its clock check, where a
    source asked the gate already (the local source does, to know what settles the message):
    the gate then only checks the clock instead of parsing it again."""

    data: bytes
    attributes: dict[str, str]
    message_id: str | None = None
    judged: Quote | None = None


def from_pubsub(message: Any) -> RawMessage:
    return RawMessage(bytes(message.data), dict(message.attributes or {}), message.message_id)
