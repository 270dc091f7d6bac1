"""Fast unit tests for the Dagster-free helpers (ml_assets.platform, tabular, search)."""

from __future__ import annotations

import io
import operator
import zipfile
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from ml_assets.lineages.fraud.generator import (
    CATEGORICAL,
    COLUMNS,
    FEATURES,
    LABEL,
    MERCHANT_NAMES,
    NUMERIC,
    generate_transactions,
)
from ml_assets.lineages.fraud.train import make_model
from ml_assets.platform.artifacts import (
    ArtifactIntegrityError,
    ArtifactRef,
    ContentStore,
    lineage_of,
)
from ml_assets.platform.environment import SIMD_FLAGS, environment_snapshot, package_versions
from ml_assets.platform.hashing import (
    canonical_json,
    canonical_skops,
    deterministic_zip,
    parquet_bytes,
    read_parquet_bytes,
    sha256_bytes,
    sha256_file,
)
from ml_assets.platform.lineage_spec import LineageSpec
from ml_assets.platform.onnx_bytes import canonical_onnx, canonical_onnx_bytes
from ml_assets.tabular.expectations import validate_frame
from ml_assets.tabular.model import from_skops_bytes, native_threads
from ml_assets.tabular.model import to_onnx_bytes as tabular_onnx_bytes
from ml_assets.tabular.model import to_skops_bytes as tabular_skops_bytes
from ml_assets.tabular.scorer import OnnxTabularScorer


def train(train_df: pd.DataFrame, seed: int = 0, **params) -> Pipeline:
    """The fraud lineage's estimator (ml_assets/lineages/fraud/train.py), fitted."""
    model = make_model(list(CATEGORICAL), list(NUMERIC), seed, **{"max_iter": 25, **params})
    with native_threads(1):
        return model.fit(train_df[list(FEATURES)], train_df[LABEL].to_numpy())


def to_skops_bytes(model: Pipeline) -> bytes:
    return tabular_skops_bytes(model)[0]


@cache
def fraud_spec() -> LineageSpec:
    """The fraud lineage as ml_assets/lineages/fraud/defs.yaml declares it."""
    # Dagster and the defs folder load only for the tests that need the declared lineage.
    from ml_assets.components.defs_folder import load_catalog

    return load_catalog().lineage("fraud")


def to_onnx_bytes(model: Pipeline) -> bytes:
    return tabular_onnx_bytes(model, fraud_spec().features, "classification", "fraud-detector")


def validate_transactions(df: pd.DataFrame):
    spec = fraud_spec()
    return validate_frame(
        df,
        spec.features,
        label=spec.label,
        task=spec.task,
        id_column=spec.id_column,
        min_rows=spec.min_rows,
        label_rate=spec.label_rate,
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def small_frame() -> pd.DataFrame:
    # 5% fraud so the 3,000-row training split holds enough positives for both classes.
    return generate_transactions(3_000, seed=11, fraud_rate=0.05)


@pytest.fixture(scope="module")
def splits(small_frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return small_frame.iloc[:2_400].reset_index(drop=True), small_frame.iloc[2_400:].reset_index(
        drop=True
    )


@pytest.fixture(scope="module")
def trained_model(splits: tuple[pd.DataFrame, pd.DataFrame]) -> Pipeline:
    train_df, _ = splits
    return train(train_df)


@pytest.fixture(scope="module")
def gx_frame() -> pd.DataFrame:
    return generate_transactions(2_000, seed=5)


# --------------------------------------------------------------------------- hashing


@pytest.mark.parametrize(
    "a, b",
    [
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ({"x": {"z": [1, 2], "y": None}, "w": "s"}, {"w": "s", "x": {"y": None, "z": [1, 2]}}),
        ({"é": 1.5, "k": True}, {"k": True, "é": 1.5}),
    ],
)
def test_canonical_json_is_key_order_independent(a: dict, b: dict) -> None:
    assert canonical_json(a) == canonical_json(b)
    assert sha256_bytes(canonical_json(a)) == sha256_bytes(canonical_json(b))


def test_canonical_json_distinguishes_different_content() -> None:
    assert canonical_json({"a": 1}) != canonical_json({"a": 2})
    assert canonical_json([1, 2]) != canonical_json([2, 1])  # lists keep their order
    # Fixed separators and ASCII-only output.
    assert canonical_json({"b": 1, "a": "é"}) == b'{"a":"\\u00e9","b":1}'


def test_parquet_bytes_stable_and_round_trips(small_frame: pd.DataFrame) -> None:
    first = parquet_bytes(small_frame)
    second = parquet_bytes(small_frame.copy())
    assert first == second
    pd.testing.assert_frame_equal(read_parquet_bytes(first), small_frame)


def test_parquet_bytes_ignores_index(small_frame: pd.DataFrame) -> None:
    head = small_frame.head(200)
    shifted = head.set_axis(range(1_000, 1_200))
    assert parquet_bytes(shifted) == parquet_bytes(head)
    assert parquet_bytes(head) != parquet_bytes(small_frame.head(201))


def test_sha256_file_matches_sha256_bytes_across_chunks(tmp_path: Path) -> None:
    data = np.random.default_rng(0).bytes((1 << 20) * 2 + 123)  # spans several read chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path) == sha256_bytes(data)
    assert sha256_bytes(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_deterministic_zip_independent_of_member_order() -> None:
    a = deterministic_zip({"b.txt": b"2", "a.txt": b"1"})
    b = deterministic_zip({"a.txt": b"1", "b.txt": b"2"})
    assert a == b
    with zipfile.ZipFile(io.BytesIO(a)) as zf:
        assert zf.namelist() == ["a.txt", "b.txt"]
        assert zf.read("b.txt") == b"2"
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())


def test_canonical_skops_identical_bytes_for_identically_trained_models(
    splits: tuple[pd.DataFrame, pd.DataFrame], trained_model: Pipeline
) -> None:
    train_df, _ = splits
    other = train(train_df)
    assert other is not trained_model
    first, second = to_skops_bytes(trained_model), to_skops_bytes(other)
    assert first == second
    assert sha256_bytes(first) == sha256_bytes(second)
    # Canonicalising an already canonical archive changes nothing.
    assert canonical_skops(first) == first


def test_canonical_skops_differs_for_a_different_model(
    splits: tuple[pd.DataFrame, pd.DataFrame], trained_model: Pipeline
) -> None:
    train_df, _ = splits
    other = train(train_df, learning_rate=0.2)
    assert to_skops_bytes(other) != to_skops_bytes(trained_model)


def test_from_skops_bytes_round_trip_predicts_identically(
    splits: tuple[pd.DataFrame, pd.DataFrame], trained_model: Pipeline
) -> None:
    _, valid_df = splits
    data, trusted = tabular_skops_bytes(trained_model)
    loaded = from_skops_bytes(data, trusted)
    x = valid_df[list(FEATURES)]
    np.testing.assert_array_equal(loaded.predict_proba(x), trained_model.predict_proba(x))
    # The types recorded at write time are exactly what the model needs.
    assert set(sio.get_untrusted_types(data=data)) == set(trusted)


def _custom_identity(x):  # module-level so skops can reference it by name
    return x


@pytest.mark.parametrize(
    "obj",
    [
        FunctionTransformer(_custom_identity),
        FunctionTransformer(operator.neg),
        {"callback": operator.add},
    ],
    ids=["custom-function", "operator-neg", "dict-with-operator"],
)
def test_from_skops_bytes_refuses_untrusted_types(obj: object) -> None:
    data = sio.dumps(obj)
    # What a fraud model's bytes were recorded with: the tree predictor type, nothing else.
    trusted = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
    untrusted = set(sio.get_untrusted_types(data=data)) - set(trusted)
    assert untrusted, "the test object must contain a type outside the trusted list"
    with pytest.raises(ValueError, match="unrecorded types") as excinfo:
        from_skops_bytes(data, trusted)
    for name in untrusted:
        assert name in str(excinfo.value)


# --------------------------------------------------------------------------- artifacts


def test_content_store_put_is_content_addressed(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store")
    data = b"hello artifacts"
    ref1 = store.put("raw", data, ".bin", code_version="1")
    stat1 = Path(ref1.path).stat()

    ref2 = store.put("raw", data, ".bin", code_version="2")
    stat2 = Path(ref2.path).stat()

    assert ref1.path == ref2.path
    assert Path(ref1.path) == (tmp_path / "store" / "raw" / f"{sha256_bytes(data)}.bin").resolve()
    assert ref1.sha256 == sha256_bytes(data)
    assert ref1.size_bytes == len(data)
    # Same bytes: the file was not rewritten (atomic_write would replace the inode).
    assert (stat1.st_ino, stat1.st_mtime_ns) == (stat2.st_ino, stat2.st_mtime_ns)
    assert ref2.code_version == "2"

    ref3 = store.put("raw", b"other bytes", ".bin", code_version="1")
    assert ref3.path != ref1.path
    assert sorted(p.name for p in (tmp_path / "store" / "raw").iterdir()) == sorted(
        [Path(ref1.path).name, Path(ref3.path).name]
    )


def test_content_store_put_repairs_a_corrupted_file(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    ref = store.put("raw", b"payload", ".bin", code_version="1")
    Path(ref.path).write_bytes(b"tampered")
    again = store.put("raw", b"payload", ".bin", code_version="1")
    assert again.read_verified() == b"payload"


def test_read_verified_returns_bytes_when_intact(tmp_path: Path) -> None:
    ref = ContentStore(tmp_path).put("fraud_model", b"model-bytes", ".skops", code_version="1")
    assert ref.read_verified() == b"model-bytes"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(b"model-bytez"), "modified"),
        (lambda p: p.write_bytes(b"model-bytes\n"), "modified"),
        (lambda p: p.unlink(), "missing"),
    ],
    ids=["modified", "appended", "deleted"],
)
def test_read_verified_detects_tampering(tmp_path: Path, damage, message: str) -> None:
    ref = ContentStore(tmp_path).put("fraud_model", b"model-bytes", ".skops", code_version="1")
    damage(Path(ref.path))
    with pytest.raises(ArtifactIntegrityError, match=message) as excinfo:
        ref.read_verified()
    assert str(excinfo.value).startswith("fraud_model:")
    assert "rematerialize fraud_model" in str(excinfo.value).lower()


def test_artifact_ref_json_round_trip(tmp_path: Path) -> None:
    lineage = [{"asset": "raw", "sha256": "a" * 64, "code_version": "1"}]
    ref = ContentStore(tmp_path).put(
        "splits",
        b"x",
        ".parquet",
        code_version="3",
        lineage=lineage,
        extra={"rows": 10, "nested": {"k": [1, 2]}},
    )
    text = ref.to_json()
    back = ArtifactRef.from_json(text)
    assert back == ref
    assert back.to_json() == text
    assert back.chain()[-1] == {"asset": "splits", "sha256": ref.sha256, "code_version": "3"}


def _ref(asset: str, *upstream: ArtifactRef) -> ArtifactRef:
    return ArtifactRef(
        asset=asset,
        sha256=sha256_bytes(asset.encode()),
        path=f"/nowhere/{asset}",
        size_bytes=1,
        code_version="1",
        lineage=lineage_of(*upstream),
    )


def test_lineage_of_orders_ancestors_topologically_and_once() -> None:
    raw = _ref("raw")
    splits = _ref("splits", raw)
    model = _ref("model", splits)
    onnx = _ref("onnx", model)
    # A diamond: the report depends on both the model and its ONNX export.
    report_lineage = lineage_of(model, onnx)
    names = [link["asset"] for link in report_lineage]
    assert names == ["raw", "splits", "model", "onnx"]

    # Order of the upstream arguments must not break topological order.
    names_rev = [link["asset"] for link in lineage_of(onnx, model)]
    assert names_rev == ["raw", "splits", "model", "onnx"]

    assert lineage_of() == []
    assert lineage_of(raw) == [raw.as_link()]
    assert report_lineage[0] == raw.as_link()


def test_lineage_of_merges_independent_branches() -> None:
    raw = _ref("raw")
    features = _ref("features", raw)
    labels = _ref("labels", raw)
    joined = _ref("joined", features, labels)
    names = [link["asset"] for link in joined.chain()]
    assert names.count("raw") == 1
    assert len(names) == len(set(names)) == 4
    pos = {n: i for i, n in enumerate(names)}
    for parent, child in [
        ("raw", "features"),
        ("raw", "labels"),
        ("features", "joined"),
        ("labels", "joined"),
    ]:
        assert pos[parent] < pos[child]


# --------------------------------------------------------------------------- fraud_data


def test_generate_transactions_deterministic_per_seed() -> None:
    a = generate_transactions(1_500, seed=3)
    b = generate_transactions(1_500, seed=3)
    c = generate_transactions(1_500, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert parquet_bytes(a) == parquet_bytes(b)
    assert not a.equals(c)
    assert not a[list(FEATURES)].equals(c[list(FEATURES)])


@pytest.mark.parametrize("rate", [0.005, 0.015, 0.1])
def test_generate_transactions_hits_fraud_rate(rate: float) -> None:
    df = generate_transactions(20_000, seed=1, fraud_rate=rate)
    assert abs(df[LABEL].mean() - rate) <= 0.002


def test_generate_transactions_respects_schema() -> None:
    calls: list[tuple[int, int]] = []
    df = generate_transactions(
        25_000, seed=2, chunk_rows=10_000, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(10_000, 25_000), (20_000, 25_000), (25_000, 25_000)]
    assert tuple(df.columns) == COLUMNS
    assert len(df) == 25_000
    assert not df.isna().any().any()
    assert df["transaction_id"].is_unique
    assert df["transaction_id"].tolist() == list(range(1, 25_001))
    # Every column within what the lineage's YAML declares for it.
    declared = fraud_spec().features
    assert [f.name for f in declared] == list(FEATURES)
    for f in declared:
        s = df[f.name]
        if f.kind == "int":
            assert pd.api.types.is_integer_dtype(s), f.name
        elif f.kind == "float":
            assert pd.api.types.is_float_dtype(s), f.name
        else:
            assert s.map(type).eq(str).all() and set(s) <= set(f.categories), f.name
        if f.min is not None:
            assert s.min() >= f.min, f.name
        if f.max is not None:
            assert s.max() <= f.max, f.name
    assert set(df["merchant_category"]) <= set(MERCHANT_NAMES)
    assert set(df[LABEL].unique()) == {0, 1}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rows": 99},
        {"rows": 0},
        {"rows": 1_000, "fraud_rate": 0.0009},
        {"rows": 1_000, "fraud_rate": 0.0},
        {"rows": 1_000, "fraud_rate": 0.2001},
        {"rows": 1_000, "fraud_rate": 0.5},
    ],
)
def test_generate_transactions_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        generate_transactions(seed=0, **kwargs)


@pytest.mark.parametrize("kwargs", [{"rows": 100}, {"rows": 500, "fraud_rate": 0.2}])
def test_generate_transactions_accepts_boundaries(kwargs: dict) -> None:
    df = generate_transactions(seed=0, **kwargs)
    assert len(df) == kwargs["rows"]


# --------------------------------------------------------------------------- expectations


def test_validate_transactions_passes_generated_frame(gx_frame: pd.DataFrame) -> None:
    outcomes = validate_transactions(gx_frame)
    failed = [o for o in outcomes if not o.success]
    assert failed == []
    columns = {o.column for o in outcomes}
    assert set(COLUMNS) <= columns
    assert "(table)" in columns


def _drop_amount(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["amount"])


def _hour_as_str(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(hour=df["hour"].astype(str))


def _null_distance(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(distance_from_home_km=df["distance_from_home_km"].where(df.index % 7 != 0))


def _no_fraud(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(is_fraud=0)


def _negative_amount(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out.loc[10, "amount"] = -5.0
    return out


@pytest.mark.parametrize(
    "corrupt, column, expectation",
    [
        (_drop_amount, "amount", "expect_column_to_exist"),
        (_hour_as_str, "hour", "expect_column_values_to_be_in_type_list"),
        (_null_distance, "distance_from_home_km", "expect_column_values_to_not_be_null"),
        (_no_fraud, LABEL, "expect_column_mean_to_be_between"),
        (_negative_amount, "amount", "expect_column_values_to_be_between"),
    ],
    ids=["dropped-column", "wrong-dtype", "nulls", "all-zero-label", "negative-amount"],
)
def test_validate_transactions_flags_bad_frames(
    gx_frame: pd.DataFrame, corrupt, column: str, expectation: str
) -> None:
    outcomes = validate_transactions(corrupt(gx_frame))
    failed = [o for o in outcomes if not o.success]
    assert failed, "a corrupted frame must fail at least one expectation"
    assert {o.column for o in failed} == {column}
    assert (expectation, column) in {(o.expectation, o.column) for o in failed}
    # Failures sort first so a report leads with them.
    assert all(not o.success for o in outcomes[: len(failed)])


# --------------------------------------------------------------------------- tabular_scorer


def test_onnx_scorer_matches_native_model(
    splits: tuple[pd.DataFrame, pd.DataFrame], trained_model: Pipeline
) -> None:
    _, valid_df = splits
    features = fraud_spec().features
    scorer = OnnxTabularScorer(to_onnx_bytes(trained_model), features, "classification")
    from_frame = scorer.predict_columns({c: valid_df[c].to_numpy() for c in FEATURES})
    from_records = scorer.predict_records(valid_df[list(FEATURES)].to_dict("records"))
    native = trained_model.predict_proba(valid_df[list(FEATURES)])[:, 1]

    assert from_frame.shape == from_records.shape == (len(valid_df),)
    np.testing.assert_allclose(from_frame, from_records, rtol=0, atol=1e-5)
    np.testing.assert_allclose(from_frame, native, rtol=0, atol=1e-5)
    assert ((from_frame >= 0) & (from_frame <= 1)).all()
    # The model is not a constant: it separates the classes somewhat.
    assert native.std() > 0


def test_onnx_export_is_deterministic(trained_model: Pipeline) -> None:
    assert to_onnx_bytes(trained_model) == to_onnx_bytes(trained_model)


def _scrambled(data: bytes, reverse: bool):
    """The model of `data` with its opset imports, metadata and attributes in another order."""
    import onnx

    model = onnx.load_from_string(data)
    model.metadata_props.add(key="b", value="2")
    model.metadata_props.add(key="a", value="1")
    lists = [model.opset_import, model.metadata_props, *(n.attribute for n in model.graph.node)]
    for field in lists if reverse else ():
        items = [type(item)() for item in field]
        for copy, item in zip(items, reversed(field), strict=True):
            copy.CopyFrom(item)
        del field[:]
        field.extend(items)
    return model


def test_canonical_onnx_ignores_the_order_of_sets_and_maps(trained_model: Pipeline) -> None:
    data = to_onnx_bytes(trained_model)
    forward, backward = _scrambled(data, False), _scrambled(data, True)
    assert forward.SerializeToString(deterministic=True) != backward.SerializeToString(
        deterministic=True
    ), "the scrambled copy must really be in another order"
    assert canonical_onnx(forward) == canonical_onnx(backward)
    assert [o.domain for o in backward.opset_import] == sorted(
        o.domain for o in forward.opset_import
    )
    assert canonical_onnx_bytes(data) == data  # what the exporter writes is already canonical


# --------------------------------------------------------------------------- environment


def test_package_versions_skips_missing_packages() -> None:
    versions = package_versions(("numpy", "definitely-not-an-installed-package-xyz"))
    assert versions == {"numpy": np.__version__}


def test_environment_snapshot_shape() -> None:
    snap = environment_snapshot()
    assert set(snap) >= {"python", "os", "machine", "cpu", "cpu_count", "simd", "packages"}
    assert set(snap["simd"]) <= set(SIMD_FLAGS)
    assert isinstance(snap["packages"], dict)
    assert snap["packages"].get("pandas") == pd.__version__
