"""`quotestream demo`: the local stack up, provisioned, and live quotes from the API."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from typing import Any

from quotestream.adapters.local.stack import LocalStack


def run(stack: LocalStack, rounds: int, keep_serving: bool) -> int:
    from quotestream import bootstrap
    from quotestream.settings import Settings

    print("==> starting the local stack (Pub/Sub emulator, BigQuery emulator, API)")
    env = stack.up()
    print("\n==> provisioning Pub/Sub and BigQuery on the emulators")
    os.environ.update(env)  # settings and the Google clients read the stack's variables
    settings = Settings()
    for result in bootstrap.build_provision_service(settings).run():
        print(f"  {result}")
    api = env["QUOTESTREAM_API_URL"]
    print(f"\n==> live quotes from {api}/v1/quotes/latest")
    print(f"  {'pair':<8} {'bid':>12} {'ask':>12} {'spread':>9}  event_ts")
    quotes: list[dict[str, str]] = []
    for round_ in range(rounds):
        if round_:
            time.sleep(1)
        for quote in _get(f"{api}/v1/quotes/latest")["quotes"]:
            quotes.append(quote)
            print(
                f"  {quote['pair']:<8} {quote['bid']:>12} {quote['ask']:>12} "
                f"{quote['spread']:>9}  {quote['event_ts']}"
            )
    receipt = _post(f"{api}/v1/quotes", quotes, env["QUOTESTREAM_API_KEY"])
    print(
        f"\n==> pushed them back through POST /v1/quotes: {receipt['accepted']} accepted, "
        f"{receipt['rejected']} rejected (relayed to the `quotes` topic)"
    )
    print(f"\nAPI docs: {api}/docs    environment: {stack.env_file}")
    if keep_serving:
        print("serving; Ctrl-C stops everything the demo started")
        _wait_for_interrupt()
    print("\n==> stopping the local stack")
    stack.down()
    return 0


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback API
        return json.load(response)


def _post(url: str, body: Any, api_key: str) -> Any:
    request = urllib.request.Request(  # noqa: S310 - loopback API
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": api_key},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.load(response)


def _wait_for_interrupt() -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
