"""The first build of a sharded index as one asset backfill, and one line per finished step.

A Dagster job holds assets of one partitioning only, so no job can run the corpus and the
embedder export (unpartitioned), every `embedding_shards` partition and then `embedding_index`
and the quality report. An asset backfill can: the daemon launches a run for the
unpartitioned roots, then one run per shard as soon as its parents are done, then the index
run once every shard is, each through the run queue (`max_concurrent_runs`, the `embedder`
pool). It is what the UI launches for "Materialize all" over the search group; here it is
launched through the webserver's GraphQL API (`launchPartitionBackfill`) and followed in the
instance's event log.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable

from dagster import DagsterInstance, RunsFilter

from ml_assets.local.progress import RunFollower

SEARCH_ASSETS = (
    "search_corpus",
    "embedding_model_onnx",
    "embedding_shards",
    "embedding_index",
    "search_quality_report",
)
LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""
BACKFILL_TAG = "dagster/backfill"
DONE = ("COMPLETED_SUCCESS", "COMPLETED_FAILED", "COMPLETED", "FAILED", "CANCELED")


def launch(dagster_url: str, assets: tuple[str, ...], title: str) -> str:
    """Submit an asset backfill of every partition of `assets`; its id."""
    params = {
        "assetSelection": [{"path": a.split("/")} for a in assets],
        "allPartitions": True,
        "title": title,
    }
    request = urllib.request.Request(
        f"{dagster_url}/graphql",
        data=json.dumps({"query": LAUNCH, "variables": {"params": params}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        body = json.loads(resp.read())
    if body.get("errors"):
        raise RuntimeError(f"the backfill was not launched: {body['errors'][0]['message']}")
    result = body["data"]["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"the backfill was not launched: {result.get('message', result)}")
    return result["backfillId"]


def follow(
    instance: DagsterInstance,
    backfill_id: str,
    say: Callable[[str], None],
    *,
    timeout_s: float,
    poll_s: float = 2.0,
) -> bool:
    """Report each step of the backfill's runs as it ends, until the backfill is done; True if
    it completed with every run successful. A TimeoutError after `timeout_s`."""
    followers: dict[str, RunFollower] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        for run in instance.get_runs(RunsFilter(tags={BACKFILL_TAG: backfill_id})):
            if run.run_id not in followers:
                partition = run.tags.get("dagster/partition")
                followers[run.run_id] = RunFollower(
                    instance, run.job_name, None, say, run_id=run.run_id, partition=partition
                )
        for follower in followers.values():
            follower.poll()
        backfill = instance.get_backfill(backfill_id)
        status = backfill.status.value if backfill else "FAILED"
        if status in DONE:
            for follower in followers.values():
                follower.poll()  # the last steps' events
            return status in ("COMPLETED_SUCCESS", "COMPLETED")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"backfill {backfill_id} is still {status} after {timeout_s:.0f} s; "
                "the UI's backfill page shows its runs"
            )
        time.sleep(poll_s)
