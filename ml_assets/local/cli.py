"""`ml-assets`: the platform's commands (up, env, status, promote, rollback, reindex, stop)."""

from __future__ import annotations

import argparse
import os
import shlex

# Each command imports MLflow, Dagster and the defs folder inside its function: after `prepare`
# has set the environment they read, and never for `--help`.
from ml_assets.local.env import prepare, say
from ml_assets.local.stack import Settings, stop_embedded_postgres
from ml_assets.local.up import up

DESCRIPTION = "ml-assets: the whole platform on the embedded default, in one command."


def env_cmd(_: argparse.Namespace) -> int:
    """Print the environment for running dagster/mlflow commands against the platform: only
    `export` lines on stdout, shell-quoted, for `eval "$(ml-assets env)"`."""
    settings = Settings.from_env()
    env = prepare(settings)
    for key, value in sorted(env.items()):
        print(f"export {key}={shlex.quote(value)}")
    return 0


def promote_cmd(args: argparse.Namespace) -> int:
    """Promote (or roll back to) a registered version through the gate."""
    from mlflow.tracking import MlflowClient

    from ml_assets.platform import promotion

    settings = Settings.from_env()
    env = prepare(settings)
    # The registry lives in MLflow's database: reachable with or without `ml-assets up`.
    client = MlflowClient(settings.mlflow_tracking_uri or env["MLFLOW_BACKEND_STORE_URI"])
    os.environ.update(env)
    from dagster import DagsterInstance

    # Dagster and the defs folder load once the environment above is set.
    from ml_assets.components.defs_folder import load_catalog
    from ml_assets.definitions import build_definitions
    from ml_assets.platform.dagster_records import DagsterRecords, rule_of

    try:
        with DagsterInstance.get() as instance:
            event = promotion.promote(
                client,
                env["ML_VECTOR_PG_DSN"],
                args.model,
                args.version,
                catalog=load_catalog(),
                records=DagsterRecords(instance, rule_of(build_definitions().get_repository_def())),
                actor=args.actor or os.environ.get("USER", "cli"),
                reason=args.reason,
                margin=args.margin,
                rollback=args.command == "rollback",
            )
    except promotion.PromotionRejected as exc:
        say(str(exc))
        for gate in exc.decision.gates:
            say(f"  {'pass' if gate.passed else 'FAIL'}  {gate.name}: {gate.detail}")
        return 1
    except ValueError as exc:
        say(str(exc))
        return 2
    for gate in event["gates"]:
        say(f"  pass  {gate['name']}: {gate['detail']}")
    say(
        f"{args.model} v{args.version} is now {promotion.PRODUCTION_ALIAS} "
        f"(was v{event['previous_version']}); event {event['event_id']}. The "
        "model_promotion_sensor bundles it and switches the endpoint."
    )
    return 0


def reindex_cmd(args: argparse.Namespace) -> int:
    """Append an `ml.embedding.reindex.request.v1` event; reindex_sensor runs reindex_job once."""
    from ml_assets.search import reindex_requests

    settings = Settings.from_env()
    env = prepare(settings)
    actor = args.actor or os.environ.get("USER", "cli")
    try:
        event = reindex_requests.append_request(env["ML_VECTOR_PG_DSN"], actor, args.reason)
    except ValueError as exc:
        say(str(exc))
        return 2
    say(
        f"reindex requested by {actor}: event {event['event_id']}. reindex_sensor starts one "
        f"reindex_job run for it (run key reindex-request:{event['event_id']})."
    )
    print(event["event_id"])  # stdout: the id alone, for scripts
    return 0


def status_cmd(_: argparse.Namespace) -> int:
    """Declared, promoted, bundled and served models, and where they differ (a table on
    stdout); works with or without `ml-assets up` running."""
    from mlflow.tracking import MlflowClient

    from ml_assets.local.status import collect
    from ml_assets.platform.provenance import md_table

    settings = Settings.from_env()
    env = prepare(settings)
    client = MlflowClient(settings.mlflow_tracking_uri or env["MLFLOW_BACKEND_STORE_URI"])
    os.environ.update(env)
    from ml_assets.components.defs_folder import load_catalog  # after the environment is set

    statuses = collect(client, env["ML_ARTIFACT_ROOT"], env["ML_SERVING_URL"], load_catalog())
    print(md_table([s.row() for s in statuses]))
    differing = [s for s in statuses if s.note]
    say(
        f"{len(differing)} of {len(statuses)} models differ between declared, promoted, bundled "
        "and served"
        if differing
        else "every declared model is promoted, bundled and served"
    )
    return 0


def stop_cmd(_: argparse.Namespace) -> int:
    settings = Settings.from_env()
    stopped = stop_embedded_postgres(settings.home / "pg")
    say("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ml-assets",
        description=DESCRIPTION,
    )
    sub = parser.add_subparsers(dest="command")
    p_up = sub.add_parser("up", help="start the platform on the embedded default")
    p_up.add_argument(
        "--rematerialize",
        action="store_true",
        help="materialize the asset graph even if everything exists",
    )
    p_up.add_argument(
        "--config",
        help="run config YAML for the first lineage's job, the /v1/score lineage's (e.g. "
        "ops: {<lineage>__raw_data: {config: {rows: 20000}}})",
    )
    p_up.add_argument(
        "--no-wait",
        action="store_true",
        help="stop everything again after the first materialization",
    )
    p_up.add_argument(
        "--keep-db", action="store_true", help="leave the embedded PostgreSQL running on exit"
    )
    p_up.set_defaults(func=up)
    sub.add_parser("env", help="print the platform's environment variables").set_defaults(
        func=env_cmd
    )
    sub.add_parser("stop", help="stop a left-over embedded PostgreSQL").set_defaults(func=stop_cmd)
    sub.add_parser(
        "status", help="declared, promoted, bundled and served models, and where they differ"
    ).set_defaults(func=status_cmd)
    p_reindex = sub.add_parser(
        "reindex", help="ask reindex_sensor for one reindex of the search index now"
    )
    p_reindex.add_argument("--reason", required=True, help="why (recorded with the event)")
    p_reindex.add_argument("--actor", help="who (default: $USER)")
    p_reindex.set_defaults(func=reindex_cmd)
    for name, text in (
        ("promote", "move a model's production alias to a version, through the gate"),
        ("rollback", "move it back to an earlier version (checks still apply)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "model",
            help="registered model: a declared lineage's or the SearchIndex's embedder "
            "(the `registered_model` of its YAML)",
        )
        p.add_argument("version")
        p.add_argument("--reason", required=True, help="why (recorded with the event)")
        p.add_argument("--actor", help="who (default: $USER)")
        p.add_argument(
            "--margin",
            type=float,
            default=None,
            help="override the lineage's declared promotion_margin (relative: 0.05 tolerates "
            "5%% worse than the champion's primary metric); default: the YAML's value",
        )
        p.set_defaults(func=promote_cmd)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        args = parser.parse_args(["up", *(argv or [])])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
