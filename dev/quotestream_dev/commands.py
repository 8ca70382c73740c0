"""`quotestream demo` and `quotestream bench ...`, plugged into the core's command line by this
distribution's `quotestream.commands` entry points.

Every `quotestream` command loads this module to build its parser, so it imports nothing of
the harness itself: each handler imports what it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from quotestream.entrypoints.cli import STATE_DIR, local_stack

if TYPE_CHECKING:
    from quotestream.entrypoints.cli import Commands


def add_demo(commands: Commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="the whole pipeline locally, driven from Airflow, with a summary and a PNG report",
    )
    demo.add_argument("--state-dir", type=Path, default=STATE_DIR)
    demo.add_argument("--seconds", type=float, default=60.0, help="how long quotes flow")
    demo.add_argument(
        "--exit", action="store_true", help="stop by itself after the summary (else: Ctrl-C)"
    )
    demo.add_argument("--airflow-port", type=int, help="default: a free port")
    demo.set_defaults(handler=_demo)


def add_bench(commands: Commands) -> None:
    bench = commands.add_parser("bench", help="measure and print figures")
    kinds = bench.add_subparsers(dest="bench", required=True)
    bench_api = kinds.add_parser("api", help="relay throughput and GET latency")
    bench_api.add_argument("--quotes", type=int, default=20_000, help="quotes through the relay")
    bench_api.add_argument(
        "--baseline-quotes", type=int, default=300, help="quotes for the one-client-each baseline"
    )
    bench_api.add_argument("--seconds", type=float, default=5.0, help="duration of the GET run")
    bench_api.set_defaults(handler=_bench_api)
    bench_pipeline = kinds.add_parser("pipeline", help="the gate, and the local load end to end")
    bench_pipeline.add_argument("--gate-messages", type=int, default=100_000)
    bench_pipeline.add_argument("--rate", type=float, default=30.0, help="quotes/s published")
    bench_pipeline.add_argument("--seconds", type=float, default=20.0, help="publishing time")
    bench_pipeline.set_defaults(handler=_bench_pipeline)
    bench_load = kinds.add_parser(
        "load", help="push through the whole local stack: throughput, latency, memory, loss"
    )
    bench_load.add_argument("--rate", type=float, default=20.0, help="quotes/s pushed")
    bench_load.add_argument("--seconds", type=float, default=60.0, help="pushing time")
    bench_load.set_defaults(handler=_bench_load)
    bench_drain = kinds.add_parser(
        "drain",
        help="the load job with each BigQuery writer (insert_all, storage_write) against a "
        "plain loop, draining the same backlog: rows/s, CPU per row, peak memory",
    )
    bench_drain.add_argument(
        "--messages", type=int, default=20_000, help="backlog size (200000: an hour's outage)"
    )
    bench_drain.set_defaults(handler=_bench_drain)
    bench_cost = kinds.add_parser(
        "cost", help="CPU per quote of the load's transforms on the FnApiRunner, and vCPUs"
    )
    bench_cost.add_argument("--messages", type=int, default=20_000, help="corpus size")
    bench_cost.set_defaults(handler=_bench_cost)
    bench_airflow = kinds.add_parser(
        "airflow", help="Airflow's API server start, with and without the project's plugin"
    )
    bench_airflow.add_argument("--runs", type=int, default=3, help="starts of each")
    bench_airflow.set_defaults(handler=_bench_airflow)


def _demo(args: argparse.Namespace) -> int:
    from quotestream.bootstrap import repo_root
    from quotestream_dev.demo import DemoRun, run

    options = DemoRun(args.seconds, keep_running=not args.exit, airflow_port=args.airflow_port)
    return run(local_stack(args), repo_root(), options)


def _bench_api(args: argparse.Namespace) -> int:
    from quotestream_dev.bench.api import run

    return run(quotes=args.quotes, baseline_quotes=args.baseline_quotes, get_seconds=args.seconds)


def _bench_pipeline(args: argparse.Namespace) -> int:
    from quotestream.bootstrap import repo_root
    from quotestream_dev.bench.pipeline import run

    return run(args.gate_messages, args.rate, args.seconds, repo_root())


def _bench_load(args: argparse.Namespace) -> int:
    from quotestream.bootstrap import repo_root
    from quotestream_dev.bench.load import run

    return run(args.rate, args.seconds, repo_root())


def _bench_drain(args: argparse.Namespace) -> int:
    from quotestream.bootstrap import repo_root
    from quotestream_dev.bench.drain import run

    return run(args.messages, repo_root())


def _bench_cost(args: argparse.Namespace) -> int:
    from quotestream_dev.bench.cost import run

    return run(args.messages)


def _bench_airflow(args: argparse.Namespace) -> int:
    from quotestream.bootstrap import repo_root
    from quotestream_dev.bench.airflow_start import run

    return run(args.runs, repo_root())
