"""Wall time of the full fraud lineage: a plain script (baseline) vs the platform, in one process.

The baseline does the same computation as a pile of scripts would (generate, split, train,
export, validate) with no Dagster, MLflow, hashing or storage. The platform path materializes
the asset graph through Dagster on a persistent Postgres instance with a real MLflow store.

    .venv/bin/python benchmarks/lineage_wall_time.py [--rows 50000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def baseline(rows: int) -> dict[str, float]:
    from sklearn.model_selection import train_test_split

    from ml_assets.lineages.fraud.generator import (
        CATEGORICAL,
        FEATURES,
        LABEL,
        NUMERIC,
        generate_transactions,
    )
    from ml_assets.lineages.fraud.train import make_model
    from ml_assets.platform.lineage_spec import FeatureSpec
    from ml_assets.tabular.model import native_threads, quality, to_onnx_bytes
    from ml_assets.tabular.scorer import OnnxTabularScorer

    times: dict[str, float] = {}
    t = time.perf_counter()
    df = generate_transactions(rows, seed=7)
    times["generate"] = time.perf_counter() - t
    t = time.perf_counter()
    train_df, rest = train_test_split(df, test_size=0.3, stratify=df[LABEL], random_state=7)
    valid_df, test_df = train_test_split(rest, test_size=0.5, stratify=rest[LABEL], random_state=7)
    times["split"] = time.perf_counter() - t
    t = time.perf_counter()
    model = make_model(list(CATEGORICAL), list(NUMERIC), seed=7)
    with native_threads(2):
        model.fit(train_df[list(FEATURES)], train_df[LABEL].to_numpy())
    times["train"] = time.perf_counter() - t
    t = time.perf_counter()
    specs = [FeatureSpec(c, "category") for c in CATEGORICAL] + [
        FeatureSpec(c, "float") for c in NUMERIC
    ]
    scorer = OnnxTabularScorer(
        to_onnx_bytes(model, specs, "classification", "fraud-detector"), specs, "classification"
    )
    times["export"] = time.perf_counter() - t
    t = time.perf_counter()
    y = test_df[LABEL].to_numpy()
    quality(y, model.predict_proba(test_df[list(FEATURES)])[:, 1])
    quality(y, scorer.predict_columns({c: test_df[c].to_numpy() for c in FEATURES}))
    times["validate (no latency timing)"] = time.perf_counter() - t
    return times


def platform(rows: int, root: Path) -> tuple[float, dict[str, float]]:
    from dagster import DagsterEventType, DagsterInstance, materialize

    from ml_assets.definitions import build_definitions
    from ml_assets.local.stack import ensure_databases, start_embedded_postgres
    from ml_assets.platform.dsn import with_database
    from ml_assets.resources import MlflowResource
    from ml_assets.resources.defaults import local_resources

    os.environ.setdefault("XDG_RUNTIME_DIR", str(root / "run"))
    (root / "run").mkdir(exist_ok=True)
    dsn = start_embedded_postgres(root / "pg", stop_on_exit=True)
    ensure_databases(dsn)
    home = root / "dagster"
    home.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["DAGSTER_PG_URL"] = with_database(dsn, "dagster", "psycopg2")
    mlflow = MlflowResource(
        tracking_uri=with_database(dsn, "mlflow", "psycopg2"),
        artifact_location=str(root / "mlflow"),
    )
    resources = local_resources(root / "artifacts", mlflow)
    # MLflow creates its schema on first use; do that outside the timed run.
    resources["mlflow"].experiment_id()
    defs = build_definitions()
    # The fraud lineage (ml_assets/lineages/fraud/defs.yaml): its assets and checks.
    assets = [
        a
        for a in [*(defs.assets or []), *(defs.asset_checks or [])]
        if all(
            k.path[0] == "fraud"
            for k in (list(getattr(a, "keys", [])) or [c.asset_key for c in a.check_specs])
        )
    ]
    with DagsterInstance.get() as instance:
        t = time.perf_counter()
        result = materialize(
            assets,
            resources=resources,
            instance=instance,
            run_config={"ops": {"fraud__raw_data": {"config": {"rows": rows}}}},
        )
        total = time.perf_counter() - t
        assert result.success
        steps: dict[str, float] = {}
        starts: dict[str, float] = {}
        for entry in instance.all_logs(result.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == DagsterEventType.STEP_START:
                starts[event.step_key] = entry.timestamp
            elif event.event_type == DagsterEventType.STEP_SUCCESS:
                steps[event.step_key] = entry.timestamp - starts[event.step_key]
    return total, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    base = baseline(args.rows)
    base_total = float(np.sum(list(base.values())))
    with tempfile.TemporaryDirectory() as tmp:
        total, steps = platform(args.rows, Path(tmp))
    print(f"rows: {args.rows:,}")
    print("baseline (plain script, no tracking or provenance):")
    for name, secs in base.items():
        print(f"  {name:<32} {secs:7.2f} s")
    print(f"  {'total':<32} {base_total:7.2f} s")
    print("platform (Dagster run on Postgres, MLflow registry, hashed artifacts, all checks):")
    for name, secs in steps.items():
        print(f"  {name:<32} {secs:7.2f} s")
    print(f"  {'total wall time of the run':<32} {total:7.2f} s")
    print(f"ratio platform / baseline: {total / base_total:.2f}x")
    print(f"target: full lineage under 120 s -> {'met' if total < 120 else 'MISSED'}")


if __name__ == "__main__":
    main()
