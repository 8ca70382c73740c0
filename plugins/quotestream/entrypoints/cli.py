"""The `quotestream` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from quotestream.adapters.local.stack import LocalStack

STATE_DIR = Path(".local")
# Commands that other distributions add (the development harness's demo and bench): each entry
# point of this group is a callable that adds its subparser to `Commands`. The core names none
# of them, so an environment without them (a wheel install, Composer) simply lists none.
COMMANDS_GROUP = "quotestream.commands"
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def main(argv: Sequence[str] | None = None) -> int:
    from quotestream.entrypoints.output import survive_closed_readers

    # Commands that start processes must stop them even when their output's reader is gone.
    survive_closed_readers()
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.handler is not _pipeline_run:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        # Known failures (missing emulator, incompatible schema, bad settings) read as one
        # clear line; QUOTESTREAM_DEBUG=1 shows the traceback.
        if os.environ.get("QUOTESTREAM_DEBUG"):
            raise
        print(f"quotestream: error: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quotestream", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    api = commands.add_parser("api", help="serve the market-data API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    api.set_defaults(handler=_api)

    local = commands.add_parser("local", help="the local stack: emulators and the API")
    local.add_argument("--state-dir", type=Path, default=STATE_DIR)
    actions = local.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start what is not running, write .local/env")
    for name in ("pubsub", "bigquery", "api"):
        up.add_argument(f"--{name}-port", type=int, help="default: the usual port if free")
    up.set_defaults(handler=_local_up)
    actions.add_parser("down", help="stop what `up` started").set_defaults(handler=_local_down)
    actions.add_parser("status", help="each part, healthy or not").set_defaults(
        handler=_local_status
    )

    provision = commands.add_parser("provision", help="create or update Pub/Sub and BigQuery")
    provision.add_argument("--env-file", type=Path, default=STATE_DIR / "env")
    provision.set_defaults(handler=_provision)

    pipeline = commands.add_parser("pipeline", help="the Beam pipelines")
    pipeline_actions = pipeline.add_subparsers(dest="action", required=True)
    run = pipeline_actions.add_parser(
        "run",
        help="run a pipeline in the foreground until it ends or Ctrl-C",
        description="Other options go to Beam and the pipeline: --backfill_start, "
        "--backfill_end, --allowed_lateness_s, --poll_interval_s, --subscription, ...",
    )
    run.add_argument("kind", choices=["extract", "load"])
    run.add_argument("--runner", default="DirectRunner", help="DirectRunner or DataflowRunner")
    run.add_argument("--env-file", type=Path, default=STATE_DIR / "env")
    run.set_defaults(handler=_pipeline_run)

    composer = commands.add_parser("composer", help="Cloud Composer")
    composer_actions = composer.add_subparsers(dest="action", required=True)
    sync = composer_actions.add_parser(
        "deploy",
        help="publish the quotestream wheel, set the environment's PyPI packages, sync dags/",
    )
    sync.add_argument("--environment", required=True)
    sync.add_argument("--location", required=True, help="the environment's region")
    sync.add_argument(
        "--python-repository",
        required=True,
        help="the Artifact Registry Python repository: LOCATION-python.pkg.dev/PROJECT/REPOSITORY",
    )
    sync.add_argument("--dry-run", action="store_true", help="print the gcloud commands only")
    sync.set_defaults(handler=_composer_deploy)

    gcp = commands.add_parser("gcp", help="Google Cloud, as an administrator")
    gcp_actions = gcp.add_subparsers(dest="action", required=True)
    setup = gcp_actions.add_parser(
        "bootstrap",
        help="set up an empty project once: APIs, accounts, repositories, buckets, the relay "
        "key, the grants, the Composer environment (idempotent)",
        description="Other names come from the QUOTESTREAM_* settings (topic, subscription, "
        "dataset, API service, Dataflow network and size, API invokers).",
    )
    setup.add_argument("--project", required=True)
    setup.add_argument("--region", required=True, help="e.g. us-central1")
    setup.add_argument(
        "--composer-image-version",
        required=True,
        help="a pinned Composer 3 build, e.g. composer-3-airflow-3.1.8-build.N, matching "
        "composer/constraints.txt",
    )
    setup.add_argument("--environment", default="quotestream", help="the Composer environment")
    setup.add_argument(
        "--dry-run", action="store_true", help="only look, and print what would be done and why"
    )
    setup.set_defaults(handler=_gcp_bootstrap)

    ship = commands.add_parser(
        "release",
        help="build and push the images and flex-template specs under one tag, ship the core "
        "and the DAGs to Composer, record the release in the environment (idempotent)",
    )
    ship.add_argument("--project", required=True)
    ship.add_argument("--region", required=True)
    ship.add_argument("--environment", default="quotestream", help="the Composer environment")
    ship.add_argument(
        "--tag", help="default: the commit, of a checkout without uncommitted changes"
    )
    ship.add_argument(
        "--cloud-build",
        action="store_true",
        help="build the images and specs on Cloud Build (cloudbuild.json), not locally",
    )
    ship.add_argument(
        "--dry-run", action="store_true", help="only look, and print what would be done"
    )
    ship.set_defaults(handler=_release)

    _add_plugged_in_commands(commands)
    return parser


def _add_plugged_in_commands(commands: Commands) -> None:
    """A command that cannot be added is left out with a warning: the product's own commands
    (`quotestream api` is what the API image runs) never depend on a plug-in."""
    # By name, once each: `--help` lists them in the same order whatever the install order
    # was, and a distribution installed twice (editable and not) adds its commands once.
    found = {entry_point.name: entry_point for entry_point in entry_points(group=COMMANDS_GROUP)}
    for name in sorted(found):
        try:
            found[name].load()(commands)
        except Exception as error:
            print(f"quotestream: warning: command {name!r} not loaded: {error}", file=sys.stderr)


def _api(args: argparse.Namespace) -> int:
    from quotestream_api.main import serve

    serve(args.host, args.port)
    return 0


def local_stack(args: argparse.Namespace) -> LocalStack:
    """The local stack in `args.state_dir`, on the `--<part>-port`s the command has, if any."""
    from quotestream.adapters.local.stack import LocalStack
    from quotestream.settings import Settings

    ports = {name: getattr(args, f"{name}_port", None) for name in ("pubsub", "bigquery", "api")}
    return LocalStack(args.state_dir, _repo_root(), Settings().project, ports)


def _local_up(args: argparse.Namespace) -> int:
    stack = local_stack(args)
    env, restarted = stack.up()
    if "pubsub" in restarted:
        # The Pub/Sub emulator keeps nothing on disk: its topics and subscriptions are gone.
        from quotestream import bootstrap
        from quotestream.settings import Settings

        os.environ.update(env)
        settings = Settings()
        print(f"re-provisioning {settings.project} on the restarted Pub/Sub emulator")
        bootstrap.build_provision_service(settings).run(report=lambda r: print(f"  {r}"))
    print(f"\nwrote {stack.env_file}; load it with: set -a; . {stack.env_file}; set +a\n")
    for key, value in env.items():
        print(f"{key}={'*' * 8 if key.endswith('API_KEY') else value}")
    return 0


def _local_down(args: argparse.Namespace) -> int:
    stack = local_stack(args)
    stack.down()
    return 0


def _local_status(args: argparse.Namespace) -> int:
    stack = local_stack(args)
    statuses = stack.status()
    print(f"{'part':<9} {'state':<10} {'pid':<8} {'port':<6} log")
    for status in statuses:
        state = "healthy" if status.healthy else ("down" if status.pid is None else "unhealthy")
        print(
            f"{status.name:<9} {state:<10} {status.pid or '-'!s:<8} {status.port or '-'!s:<6} "
            f"{status.log or '-'}"
        )
    return 0 if all(status.healthy for status in statuses) else 3


def _provision(args: argparse.Namespace) -> int:
    from quotestream import bootstrap
    from quotestream.settings import Settings

    _load_env_file(args.env_file)
    settings = Settings()
    print(f"provisioning project {settings.project} (target {settings.target})")
    service = bootstrap.build_provision_service(settings)
    results = service.run(report=lambda result: print(f"  {result}"))
    changed = sum(result.outcome != "exists" for result in results)
    print(f"{len(results)} resources, {changed} changed")
    return 0


def _pipeline_run(args: argparse.Namespace) -> int:
    import logging

    from quotestream.beam.run import launch, quiet_beam_logging

    _load_env_file(args.env_file)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    quiet_beam_logging()
    result = launch(args.kind, [f"--runner={args.runner}", *args.extra])
    print(f"{args.kind} pipeline running on {args.runner}; Ctrl-C stops it")
    try:
        result.wait_until_finish()
    except KeyboardInterrupt:
        result.cancel()
        raise
    print(f"{args.kind} pipeline finished: {result.state}")
    return 0


def _composer_deploy(args: argparse.Namespace) -> int:
    from quotestream.entrypoints.composer import Target, deploy

    target = Target(args.environment, args.location, args.python_repository)
    return deploy(_repo_root(), target, args.dry_run)


def _gcp_bootstrap(args: argparse.Namespace) -> int:
    from quotestream.entrypoints.gcp_bootstrap import Layout, bootstrap
    from quotestream.settings import Settings

    settings = Settings(target="gcp", project=args.project, region=args.region)
    layout = Layout(settings, args.environment)
    return bootstrap(layout, args.composer_image_version, _repo_root(), args.dry_run)


def _release(args: argparse.Namespace) -> int:
    from quotestream.entrypoints.gcp_bootstrap import Layout
    from quotestream.entrypoints.release import release
    from quotestream.settings import Settings

    layout = Layout(
        Settings(target="gcp", project=args.project, region=args.region), args.environment
    )
    return release(layout, args.tag, args.cloud_build, _repo_root(), args.dry_run)


def _load_env_file(path: Path) -> None:
    """Apply a `local up` env file for variables the environment does not set already."""
    if not path.is_file():
        return
    from quotestream.adapters.local.stack import read_env_file

    applied = []
    for key, value in read_env_file(path).items():
        if key not in os.environ:
            os.environ[key] = value
            applied.append(key)
    if applied:
        print(f"using {path} for {', '.join(sorted(applied))}")


def _repo_root() -> Path:
    from quotestream.bootstrap import repo_root

    return repo_root()


if __name__ == "__main__":
    sys.exit(main())
