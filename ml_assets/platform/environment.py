"""A snapshot of the environment an asset was built in, recorded with every materialization."""

from __future__ import annotations

import os
import platform
from importlib import metadata

KEY_PACKAGES = (
    "dagster",
    "mlflow",
    "scikit-learn",
    "skl2onnx",
    "onnx",
    "onnxruntime",
    "numpy",
    "pandas",
    "pyarrow",
    "great_expectations",
    "torch",
    "transformers",
    "bentoml",
)


# The instruction sets ONNX Runtime's and numpy's kernels are chosen by: they decide the last
# bits of a float (int8 matmuls saturate on AVX2 without VNNI), so a value computed by those
# kernels (embeddings, the search quality report) holds for one `simd` set, not for every CPU.
SIMD_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
)


def _cpuinfo(field: str) -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def simd_flags() -> list[str]:
    """This CPU's SIMD instruction sets among SIMD_FLAGS (empty where /proc/cpuinfo is absent)."""
    flags = set((_cpuinfo("flags") or "").split())
    return [f for f in SIMD_FLAGS if f in flags]


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def environment_snapshot() -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "simd": simd_flags(),
        "gpu": None,
        "packages": package_versions(),
    }
