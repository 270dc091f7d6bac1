"""serving_deployment: switch the running endpoint (ML_SERVING_URL) to the bundle the serving
job built, and wait until every worker serves exactly its versions."""

import json
import os
import time
from collections.abc import Iterator

import httpx
from dagster import AssetExecutionContext, Failure, MetadataValue, Output, asset

from ml_assets.platform.artifacts import ArtifactRef, lineage_of
from ml_assets.platform.hashing import canonical_json
from ml_assets.platform.provenance import hashed_output
from ml_assets.resources.storage import ArtifactStore

GROUP = "serving"


def served_versions(url: str, attempts: int = 12) -> set[str]:
    """What the endpoint's workers serve. Each /models answer comes from one worker, and a
    kept-alive connection always reaches the same one: every attempt opens a new connection,
    so the kernel spreads them over the workers."""
    seen: set[str] = set()
    for _ in range(attempts):
        with httpx.Client(base_url=url, timeout=10.0, headers={"Connection": "close"}) as client:
            models = client.get("/models").json()["models"]
        seen.add(
            ",".join(f"{m['registered_model']}@{m['version']}" for _, m in sorted(models.items()))
        )
    return seen


@asset(
    group_name=GROUP,
    code_version="serving_deployment@1",
    output_required=False,
    description="Switch the running endpoint (ML_SERVING_URL) to the bundled production versions.",
)
def serving_deployment(
    context: AssetExecutionContext, serving_bundle: ArtifactRef, store: ArtifactStore
) -> Iterator[Output[ArtifactRef]]:
    url = os.environ.get("ML_SERVING_URL")
    if not url:
        context.log.info(
            "ML_SERVING_URL is not set: no running endpoint to switch (the Bento is built and "
            "smoke-tested; `ml-assets up` sets it for its own endpoint)"
        )
        return
    key = os.environ.get("ML_SERVING_API_KEY", "")
    manifest = json.loads(serving_bundle.read_verified())
    want = ",".join(
        f"{m['registered_model']}@{m['version']}" for _, m in sorted(manifest["models"].items())
    )
    start = time.perf_counter()
    try:
        # The manifest goes along: the endpoint serves the search configuration it carries.
        resp = httpx.post(
            f"{url}/reload", json={"bundle": manifest}, headers={"X-API-Key": key}, timeout=120
        )
    except httpx.ConnectError as exc:
        # Nothing listens there: no endpoint to switch. When it starts it serves the newest
        # bundle (`ml-assets up` starts the one this run built).
        context.log.warning(f"no endpoint is running at {url} ({exc}); nothing to switch")
        return
    except httpx.HTTPError as exc:
        raise Failure(f"the endpoint at {url} did not answer the reload: {exc}") from exc
    if resp.status_code != 200:
        raise Failure(f"POST {url}/reload answered {resp.status_code}: {resp.text[:500]}")
    deadline = time.monotonic() + 30
    while (served := served_versions(url)) != {want} and time.monotonic() < deadline:
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    if served != {want}:
        raise Failure(
            f"after the reload {url} serves {sorted(served)}, the bundle pins {want}; "
            "a newer promotion may be in flight (its serving run will switch it)"
        )
    record = {
        "url": url,
        "served": want,
        "bundle_sha256": serving_bundle.sha256,
        "bento_tag": serving_bundle.extra["bento_tag"],
        "changed": resp.json().get("changed"),
    }
    ref = store.content().put(
        "serving_deployment",
        canonical_json(record),
        ".json",
        code_version="serving_deployment@1",
        lineage=lineage_of(serving_bundle),
    )
    context.log.info(f"{url} serves {want} ({seconds:.2f} s from reload to every worker)")
    yield hashed_output(
        ref,
        upstream={"serving_bundle": serving_bundle},
        wall_time_s=seconds,
        metadata={
            "endpoint": MetadataValue.url(url),
            "served": MetadataValue.text(want),
            "reload_to_all_workers_s": MetadataValue.float(round(seconds, 3)),
            "changed": MetadataValue.bool(bool(record["changed"])),
        },
    )
