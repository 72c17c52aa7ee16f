"""Kubernetes Events on a ZyraRun, posted with the operator's own API client.

kopf.event() only works inside kopf's handlers (it needs their context); a transition first seen by the
resync loop would raise there, after the status was written and before the run's end was announced.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import datetime, timezone
from typing import Any, Literal

import aiohttp

from zyrak8s_operator.kubeapi import ApiError, KubeApi

log = logging.getLogger(__name__)

COMPONENT = "zyra-operator"
INSTANCE = socket.gethostname()  # in a pod: the pod's name
MESSAGE_LIMIT = 1024  # what the API server keeps of an Event's message


def event_body(obj: dict[str, Any], type_: Literal["Normal", "Warning"], reason: str, message: str) -> dict[str, Any]:
    meta = obj["metadata"]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta["name"],
            "namespace": meta["namespace"], "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason[:128],
        "message": message[:MESSAGE_LIMIT],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": INSTANCE,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


async def post(api: KubeApi, obj: dict[str, Any], type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
    """Best effort, as kubectl's and the kubelet's Events are: a refused Event is logged, never raised."""
    try:
        await api.create("v1", obj["metadata"]["namespace"], "events", event_body(obj, type_, reason, message))
    except (ApiError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        log.warning("cannot post an Event", extra={"run": obj["metadata"]["name"], "reason": reason, "error": str(exc)[:300]})
