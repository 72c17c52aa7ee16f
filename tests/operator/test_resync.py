"""A run's end first seen by the operator's resync loop, outside kopf's handlers.

The loop is the safety net for missed watch events; the run it finishes must be announced like any other:
its status written, its live stream ended (clients waiting on the relay), its Event posted. `reconcile` is
called here as the loop calls it, in a namespace no operator watches, against the real cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.kube import KubeCluster
from tests.operator.conftest import CRD

pytestmark = [pytest.mark.cluster]


async def _reconcile_outside_kopf(namespace: str, name: str, tmp_path: Path) -> list[Any]:
    import kopf

    from zyrak8s_core import kube
    from zyrak8s_core import relay as relays
    from zyrak8s_core import storage as storages
    from zyrak8s_operator import runs
    from zyrak8s_operator.kubeapi import KubeApi

    storage = storages.LocalStorage(tmp_path / "storage")
    storage.put_bytes(storages.log_key(name, "stderr"), b"the last words of the run\n")
    storage.put_bytes(storages.log_key(name, "stdout"), b"")
    memo = kopf.Memo(
        api=KubeApi(kopf.login_with_kubeconfig(logger=logging.getLogger(__name__), settings=kopf.OperatorSettings())),
        storage=storage,
        relay=relays.MemoryRelay(),
    )
    try:
        # the operator created the Job and saw it run; the Job is gone now, with no event left to say so
        await memo.api.patch(runs.RUNS, namespace, kube.PLURAL, name,
                             {"status": {"phase": "Running", "jobName": name}}, sub="status")
        await runs.reconcile(memo, namespace, name)
        return await memo.relay.snapshot(name)
    finally:
        await memo.api.close()


def test_a_run_finished_by_the_resync_loop_is_announced(
    kube_cluster: KubeCluster, kube_namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "resynced"
    obj = {
        "apiVersion": "zyra.io/v1alpha1", "kind": "ZyraRun", "metadata": {"name": name},
        "spec": {"stage": "visualize", "command": "heatmap", "argv": ["--help"]},
    }
    kube_cluster.kubectl("apply", "-f", str(CRD))
    kube_cluster.kubectl("-n", kube_namespace, "apply", "-f", "-", input=json.dumps(obj))
    monkeypatch.setenv("KUBECONFIG", kube_cluster.kubeconfig)

    relayed = asyncio.run(_reconcile_outside_kopf(kube_namespace, name, tmp_path))

    run = json.loads(kube_cluster.kubectl("-n", kube_namespace, "get", "zyrarun", name, "-o", "json").stdout)
    status = run["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "JobDeleted")
    assert status["stderrTail"] == "the last words of the run\n"
    assert [(e.kind, e.data) for e in relayed] == [("end", {"status": "failed"})], "clients of the stream would wait forever"
    events = json.loads(kube_cluster.kubectl(
        "-n", kube_namespace, "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json").stdout)["items"]
    assert [(e["type"], e["reason"], e["source"]["component"]) for e in events] == [("Warning", "JobDeleted", "zyra-operator")]
    assert "its Job was deleted" in events[0]["message"] and events[0]["involvedObject"]["uid"] == run["metadata"]["uid"]
