"""The publisher ceiling `quotestream bench api` holds the relay against: one long-lived
batched PublisherClient, in a process of its own, publishing a file of messages as fast as it
can. Run as `python -m quotestream_dev.bench.raw_publish TOPIC_PATH MESSAGES_FILE`; each line
of the file is {"data": "...", "attributes": {...}}."""

from __future__ import annotations

import json
import sys


def main(topic: str, messages_file: str) -> None:
    from google.cloud.pubsub_v1 import PublisherClient

    with open(messages_file, encoding="utf-8") as lines:
        messages = [json.loads(line) for line in lines]
    publisher = PublisherClient()
    futures = [
        publisher.publish(topic, message["data"].encode(), **message["attributes"])
        for message in messages
    ]
    for future in futures:
        future.result(timeout=120)
    publisher.stop()


if __name__ == "__main__":
    main(*sys.argv[1:3])
