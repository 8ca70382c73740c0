"""The baseline `quotestream bench drain` holds the load job against: a hand-written consumer
that pulls up to 1,000 messages, passes them through the gate, inserts quote rows and
dead-letter rows with insert ids, and acknowledges them, until it is stopped. No bars, no
lookups, no redelivery handling: the least a correct consumer of the subscription does.

Run as `python -m quotestream_dev.bench.plain_loop`, with the settings in the environment.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

PULL_SIZE = 1_000


def main() -> None:
    from quotestream import bootstrap
    from quotestream.domain.rows import dead_letter_row_id
    from quotestream.domain.schemas import QUOTES, QUOTES_DEAD_LETTER
    from quotestream.settings import Settings

    settings = Settings()
    subscriber = bootstrap.build_subscriber(settings)
    warehouse = bootstrap.build_warehouse(settings)
    subscription = subscriber.subscription_path(settings.project, settings.load_subscription)
    while True:
        received = _pull(subscriber, subscription)
        if not received:
            time.sleep(0.1)
            continue
        quotes, dead_letters = gated_rows(
            (item.message.data, item.message.attributes, item.message.message_id)
            for item in received
        )
        if quotes:
            warehouse.insert_rows(QUOTES.name, quotes, [row["event_id"] for row in quotes])
        if dead_letters:
            warehouse.insert_rows(
                QUOTES_DEAD_LETTER.name,
                dead_letters,
                [dead_letter_row_id(row) for row in dead_letters],
            )
        subscriber.acknowledge(
            request={"subscription": subscription, "ack_ids": [item.ack_id for item in received]}
        )


def gated_rows(
    messages: Iterable[tuple[bytes, Mapping[str, str], str]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(data, attributes, message id) -> the quote rows and dead-letter rows the gate makes."""
    from quotestream.domain.quote import now_ms
    from quotestream.domain.rows import dead_letter_row, quote_row
    from quotestream.domain.validation import InvalidQuote, parse_quote

    quotes, dead_letters = [], []
    for data, attributes, message_id in messages:
        try:
            quotes.append(quote_row(parse_quote(data, attributes), now_ms()))
        except InvalidQuote as error:
            dead_letters.append(
                dead_letter_row(
                    data,
                    attributes,
                    reason=error.reason,
                    error=error.detail,
                    stage="parse",
                    received_ts_ms=now_ms(),
                    message_id=message_id,
                )
            )
    return quotes, dead_letters


def _pull(subscriber: Any, subscription: str) -> list[Any]:
    """Up to PULL_SIZE messages: the emulator answers a pull with a hundred or so at a time."""
    received: list[Any] = []
    while len(received) < PULL_SIZE:
        response = subscriber.pull(
            request={
                "subscription": subscription,
                "max_messages": PULL_SIZE - len(received),
                "return_immediately": True,
            },
            timeout=30,
        )
        if not response.received_messages:
            break
        received += response.received_messages
    return received


if __name__ == "__main__":
    main()
