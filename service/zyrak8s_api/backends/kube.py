"""The Kubernetes backend: every run is a ZyraRun in the API's namespace; the operator does the rest.

Nothing here lives in process memory that another replica would need: records are the ZyraRuns, uploads
and logs are in S3, live frames come through Redis. Sync requests wait on one shared watch of the
namespace's ZyraRuns (a thread), not on a poll per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from zyrak8s_core import kube
from zyrak8s_core import relay as relays
from zyrak8s_core import storage as storages
from zyrak8s_core.runs import RunRecord
from zyrak8s_core.settings import Settings
from zyrak8s_api import metrics
from zyrak8s_api.backends.base import Backend, NotFound

__all__ = ["KubeBackend"]

log = logging.getLogger(__name__)

THREADS = 32


class KubeBackend(Backend):
    def __init__(self, settings: Settings, storage: storages.Storage, relay: relays.Relay) -> None:
        self.settings = settings
        self.storage = storage
        self.relay = relay
        self.namespace = kube.current_namespace(settings.namespace)
        self._waiters: dict[str, list[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        kube.load_config()
        # every request makes blocking client calls in threads: more than the default cores + 4
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="kube"))
        config = client.Configuration.get_default_copy()
        # one kept-alive TLS connection per thread (and the watch's): the default pool (5 x cores) is smaller, and
        # each connection it discards costs a new TLS handshake on both sides (bench/api_replicas.py)
        config.connection_pool_maxsize = THREADS + 1
        self.api = client.CustomObjectsApi(client.ApiClient(config))
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._watch_forever, name="zyraruns-watch", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        self._stop.set()

    async def submit(self, record: RunRecord) -> tuple[RunRecord, bool]:
        if record.idempotency_key:
            record.job_id = kube.idempotent_name(record.owner, record.idempotency_key)
        body = kube.run_object(record)
        try:
            created = await asyncio.to_thread(
                self.api.create_namespaced_custom_object, kube.GROUP, kube.VERSION, self.namespace, kube.PLURAL, body
            )
        except ApiException as exc:
            if exc.status == 409 and record.idempotency_key:
                return await self.get(record.job_id), False
            raise
        metrics.RUNS_SUBMITTED.inc()
        return kube.run_record(created), True

    async def _object(self, job_id: str) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(
                self.api.get_namespaced_custom_object, kube.GROUP, kube.VERSION, self.namespace, kube.PLURAL, job_id
            )
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(job_id) from None
            raise
        except ValueError:  # an id the client library refuses to put in a URL
            raise NotFound(job_id) from None

    async def get(self, job_id: str) -> RunRecord:
        return kube.run_record(await self._object(job_id))

    async def cancel(self, job_id: str) -> RunRecord:
        record = await self.get(job_id)
        if record.status.final:
            return record
        await asyncio.to_thread(
            self.api.patch_namespaced_custom_object,
            kube.GROUP, kube.VERSION, self.namespace, kube.PLURAL, job_id, {"spec": {"cancel": True}},
        )
        return await self.wait(job_id, self.settings.cancel_grace_seconds + 30)

    async def wait(self, job_id: str, timeout: float) -> RunRecord:
        event = asyncio.Event()
        self._waiters.setdefault(job_id, []).append(event)
        try:
            record = await self.get(job_id)  # after registering, so a change in between is not missed
            deadline = asyncio.get_running_loop().time() + timeout
            while not record.status.final:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                # the watch wakes us; the periodic look covers a watch that was re-listed in between
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(event.wait(), min(5.0, remaining))
                event.clear()
                record = await self.get(job_id)
            return record
        finally:
            waiting = self._waiters.get(job_id, [])
            if event in waiting:
                waiting.remove(event)
            if not waiting:
                self._waiters.pop(job_id, None)

    async def check(self) -> None:
        await asyncio.to_thread(
            self.api.list_namespaced_custom_object, kube.GROUP, kube.VERSION, self.namespace, kube.PLURAL, limit=1
        )

    # -- the shared watch

    def _notify(self, name: str) -> None:
        for event in self._waiters.get(name, []):
            event.set()

    def _watch_forever(self) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listing = self.api.list_namespaced_custom_object(kube.GROUP, kube.VERSION, self.namespace, kube.PLURAL, limit=1)
                    version = listing["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(
                    self.api.list_namespaced_custom_object, kube.GROUP, kube.VERSION, self.namespace, kube.PLURAL,
                    resource_version=version, timeout_seconds=60, allow_watch_bookmarks=True,
                )
                for item in stream:
                    obj = item["object"]
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    if item["type"] == "ERROR":
                        version = None  # 410 Gone: start again from a fresh list
                        break
                    phase = (obj.get("status") or {}).get("phase")
                    if phase in kube.FINAL_PHASES or item["type"] == "DELETED":
                        name = obj["metadata"]["name"]
                        if self._loop is not None:
                            self._loop.call_soon_threadsafe(self._notify, name)
                    if self._stop.is_set():
                        return
            except ApiException as exc:
                if exc.status == 410:
                    version = None
                else:
                    log.warning("ZyraRun watch failed, retrying", extra={"status": exc.status})
                    self._stop.wait(2)
            except Exception as exc:  # the connection dropped: watch again from where we were
                log.warning("ZyraRun watch interrupted, retrying", extra={"error": str(exc)})
                self._stop.wait(1)
