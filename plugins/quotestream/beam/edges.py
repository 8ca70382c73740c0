"""Where the streaming load's messages come from and what settles them once stored: the one
place the load differs between Dataflow and the local runner. bootstrap picks the edge."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import apache_beam as beam
from apache_beam.io.gcp.pubsub import ReadFromPubSub
from apache_beam.pvalue import PCollection

from quotestream.beam.messages import from_pubsub

# Attributes every quote is published with (Quote.pubsub_attributes). Dataflow's Pub/Sub source
# takes each element's timestamp, and so the watermark, from the first, and drops a message
# whose second it has recently seen: a redelivery or a republished copy alike.
EVENT_TIME_ATTRIBUTE = "event_ts"
EVENT_ID_ATTRIBUTE = "event_id"


class LoadEdge(Protocol):
    def read(self, pipeline: beam.Pipeline) -> PCollection[Any]:
        """The subscription's messages, as RawMessage."""

    def settle(self, stored: Mapping[str, PCollection[Any]]) -> None:
        """Settle the messages whose quote rows or dead-letter rows `stored` holds."""


def read_pubsub(subscription: str) -> ReadFromPubSub:
    """On Dataflow, Dataflow's own Pub/Sub source, which acknowledges a message only once what
    the first fused stage made of it is durably committed. The DirectRunner refuses it
    (id_label) and would acknowledge on pull anyway: the local target pulls by itself."""
    return ReadFromPubSub(
        subscription=subscription,
        with_attributes=True,
        timestamp_attribute=EVENT_TIME_ATTRIBUTE,
        id_label=EVENT_ID_ATTRIBUTE,
    )


@dataclass(frozen=True)
class DataflowPubSubEdge:
    """Dataflow's Pub/Sub source, which settles each message itself."""

    subscription: str

    def read(self, pipeline: beam.Pipeline) -> PCollection[Any]:
        return (
            pipeline
            | "ReadPubSub" >> read_pubsub(self.subscription)
            | "ToRawMessage" >> beam.Map(from_pubsub)
        )

    def settle(self, stored: Mapping[str, PCollection[Any]]) -> None:
        """Nothing to do: Dataflow acknowledged each message after its durable commit."""
