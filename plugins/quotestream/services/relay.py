"""The push relay: quotes accepted by the API reach Pub/Sub through one long-lived publisher.

A bounded buffer sits between the request handlers and the publisher. `offer` is
all-or-nothing: a batch that does not fit is refused whole (the API answers 503 and the
client retries), so nothing is ever dropped silently. Quotes whose publish fails go back to
the front of the buffer and are retried with backoff; `close` drains before it returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from quotestream.domain.quote import Quote
from quotestream.ports import Publisher

log = logging.getLogger(__name__)

_MAX_IN_FLIGHT = 5_000
_RETRY_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True, slots=True)
class RelayStats:
    accepted: int
    published: int
    publish_errors: int
    pending: int


class RelayClosed(RuntimeError):
    pass


class QuoteRelay:
    def __init__(
        self, publisher: Publisher, topic: str, capacity: int, *, ordered: bool = False
    ) -> None:
        self._publisher = publisher
        self._topic = topic
        self._capacity = capacity
        self._ordered = ordered
        self._queue: deque[Quote] = deque()
        self._in_flight = 0
        self._accepted = 0
        self._published = 0
        self._errors = 0
        self._consecutive_errors = 0
        self._closing = False
        self._lock = threading.Condition()
        self._worker = threading.Thread(target=self._run, name="quote-relay", daemon=True)

    def start(self) -> None:
        self._worker.start()

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def alive(self) -> bool:
        return self._worker.is_alive() and not self._closing

    def offer(self, quotes: Sequence[Quote]) -> bool:
        """Queue every quote or none. False means full: the caller must retry later."""
        with self._lock:
            if self._closing:
                raise RelayClosed("the relay is shutting down")
            if len(self._queue) + self._in_flight + len(quotes) > self._capacity:
                return False
            self._queue.extend(quotes)
            self._accepted += len(quotes)
            self._lock.notify_all()
            return True

    def stats(self) -> RelayStats:
        with self._lock:
            return RelayStats(
                accepted=self._accepted,
                published=self._published,
                publish_errors=self._errors,
                pending=len(self._queue) + self._in_flight,
            )

    def ping(self, timeout: float) -> None:
        self._publisher.ping(self._topic, timeout)

    def close(self, timeout: float) -> int:
        """Stop accepting, publish everything accepted, flush. Returns what could not be
        published before the deadline (logged as an error: that is the only way to lose)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closing = True
            self._lock.notify_all()
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(remaining)
            unpublished = len(self._queue) + self._in_flight
        self._worker.join(max(0.0, deadline - time.monotonic()))
        self._publisher.close()
        if unpublished:
            log.error("relay closed with %d accepted quotes unpublished", unpublished)
        else:
            log.info("relay drained: %d quotes published", self._published)
        return unpublished

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue or self._in_flight >= _MAX_IN_FLIGHT:
                    if self._closing and not self._queue and not self._in_flight:
                        return
                    self._lock.wait(0.5)
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), 500))]
                self._in_flight += len(batch)
                backoff = self._backoff()
            if backoff:
                time.sleep(backoff)
            for quote in batch:
                self._publish(quote)

    def _publish(self, quote: Quote) -> None:
        try:
            future = self._publisher.publish(
                self._topic,
                quote.to_json(),
                quote.pubsub_attributes(),
                ordering_key=quote.pair if self._ordered else "",
            )
        except Exception as error:  # the client refused synchronously: retry like a failure
            self._settle(quote, error)
            return

        def done(finished: Any) -> None:
            self._settle(quote, finished.exception())

        future.add_done_callback(done)

    def _settle(self, quote: Quote, error: BaseException | None) -> None:
        with self._lock:
            self._in_flight -= 1
            if error is None:
                self._published += 1
                self._consecutive_errors = 0
            else:
                self._errors += 1
                self._consecutive_errors += 1
                self._queue.appendleft(quote)
                if self._consecutive_errors in (1, 100) or self._consecutive_errors % 1000 == 0:
                    log.warning("publish failed, will retry %s: %s", quote.event_id, error)
            self._lock.notify_all()

    def _backoff(self) -> float:
        if not self._consecutive_errors:
            return 0.0
        step = min(self._consecutive_errors, len(_RETRY_BACKOFF_S)) - 1
        return _RETRY_BACKOFF_S[step]
