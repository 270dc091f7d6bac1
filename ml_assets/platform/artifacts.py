"""Content-addressed artifacts: every file is stored under its sha256 and verified on read."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ml_assets.platform.hashing import sha256_bytes, sha256_file


class ArtifactIntegrityError(RuntimeError):
    """An artifact's bytes no longer match the sha256 recorded when it was written."""


@dataclass(frozen=True)
class ArtifactRef:
    """What one materialization produced: where its bytes are and what they hash to.

    `lineage` lists every ancestor (asset, sha256, code_version) in topological order, so a
    model's provenance chain back to the raw data travels with the model itself.
    """

    asset: str
    sha256: str
    path: str
    size_bytes: int
    code_version: str
    lineage: list[dict[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ArtifactRef:
        return cls(**json.loads(text))

    def read_verified(self) -> bytes:
        """Read the bytes and refuse them if they were changed after they were written."""
        try:
            data = Path(self.path).read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactIntegrityError(
                f"{self.asset}: artifact {self.path} is missing; rematerialize {self.asset}."
            ) from exc
        actual = sha256_bytes(data)
        if actual != self.sha256:
            raise ArtifactIntegrityError(
                f"{self.asset}: {self.path} has sha256 {actual}, expected {self.sha256}; "
                f"the file was modified after it was written. Rematerialize {self.asset}."
            )
        return data

    def as_link(self) -> dict[str, str]:
        return {"asset": self.asset, "sha256": self.sha256, "code_version": self.code_version}

    def chain(self) -> list[dict[str, str]]:
        """The provenance chain from the first ancestor to this artifact."""
        return [*self.lineage, self.as_link()]


def lineage_of(*upstream: ArtifactRef) -> list[dict[str, str]]:
    """The ancestors of an asset built from `upstream`, each once, in topological order."""
    seen: dict[str, dict[str, str]] = {}
    for ref in upstream:
        for link in ref.chain():
            seen.setdefault(link["asset"], link)
    return list(seen.values())


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file and rename, so readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ContentStore:
    """Files under `base_dir/<asset>/<sha256><suffix>`; writing the same bytes twice is a no-op."""

    def __init__(self, base_dir: str | Path) -> None:
        self.base_dir = Path(base_dir)

    def put(
        self,
        asset: str,
        data: bytes,
        suffix: str,
        *,
        code_version: str,
        lineage: list[dict[str, str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ArtifactRef:
        digest = sha256_bytes(data)
        path = self.base_dir / asset / f"{digest}{suffix}"
        if not path.exists() or sha256_file(path) != digest:
            atomic_write(path, data)
        return ArtifactRef(
            asset=asset,
            sha256=digest,
            path=str(path.resolve()),
            size_bytes=len(data),
            code_version=code_version,
            lineage=list(lineage or []),
            extra=dict(extra or {}),
        )

    def ref_for(self, asset: str, sha256: str, suffix: str) -> ArtifactRef:
        """A ref to bytes already stored under their sha256 (read_verified checks them)."""
        path = self.base_dir / asset / f"{sha256}{suffix}"
        if not path.exists():
            raise FileNotFoundError(
                f"{asset}: no stored file with sha256 {sha256}; materialize {asset} first."
            )
        return ArtifactRef(
            asset=asset,
            sha256=sha256,
            path=str(path.resolve()),
            size_bytes=path.stat().st_size,
            code_version="",
        )
