"""Where Bentos and BentoML models live (BENTOML_HOME), and the build that fills it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from ml_assets.platform.child_json import child_answer


class BentoResource(ConfigurableResource):
    """The BentoML home the serving bundle is built into and served from."""

    home: str = Field(description="BENTOML_HOME: the model store and the Bento store.")

    def env(self) -> dict[str, str]:
        return {**os.environ, "BENTOML_HOME": self.home, "BENTOML_DO_NOT_TRACK": "True"}

    def build(self, spec: dict[str, Any], spec_path: Path) -> dict[str, Any]:
        """Import the models and build the Bento in a child process (bundle/bento_build.py)."""
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.run(
            [sys.executable, "-m", "ml_assets.bundle.bento_build", str(spec_path)],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"bentoml build failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
            )
        return child_answer(proc.stdout)
