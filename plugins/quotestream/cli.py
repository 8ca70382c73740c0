"""The `quotestream` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quotestream", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    api = commands.add_parser("api", help="serve the market-data API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))

    bench = commands.add_parser("bench", help="measure and print figures")
    bench_kinds = bench.add_subparsers(dest="bench", required=True)
    bench_api = bench_kinds.add_parser("api", help="relay throughput and GET latency")
    bench_api.add_argument("--quotes", type=int, default=20_000, help="quotes through the relay")
    bench_api.add_argument(
        "--baseline-quotes", type=int, default=300, help="quotes for the one-client-each baseline"
    )
    bench_api.add_argument("--seconds", type=float, default=5.0, help="duration of the GET run")

    args = parser.parse_args(argv)
    if args.command == "api":
        from quotestream_api.main import serve

        serve(args.host, args.port)
        return 0
    if args.command == "bench" and args.bench == "api":
        from quotestream.bench.api import run

        return run(
            quotes=args.quotes, baseline_quotes=args.baseline_quotes, get_seconds=args.seconds
        )
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
