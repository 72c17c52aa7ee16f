"""ZyraRun handlers: create the Job, follow it, write the status, clean up.

    python -m zyrak8s_operator [--namespace NS | --all-namespaces]

Every handler funnels into `reconcile`, which reads the run, its Job and its Pods as they are now and
writes the status that `outcome.decide` gives: a restarted operator picks every run up where it was, and a
missed event is caught by the periodic resync.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Literal

import kopf

from zyrak8s_core import callbacks, catalogue, kube, logs
from zyrak8s_core import relay as relays
from zyrak8s_core import storage as storages
from zyrak8s_core.runs import RunSpec, tail
from zyrak8s_core.settings import Settings, get_settings

from zyrak8s_operator import events, jobs, memory, metrics
from zyrak8s_operator.kubeapi import ApiError, KubeApi, login
from zyrak8s_operator.outcome import Outcome, decide

log = logging.getLogger(__name__)

SETTINGS: Settings = get_settings()
_locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
_background: set[asyncio.Task[Any]] = set()


RUNS = f"{kube.GROUP}/{kube.VERSION}"  # group/version of ZyraRuns, as KubeApi takes it
JOBS = "batch/v1"
CORE = "v1"


@kopf.on.login()
def authenticate(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> kopf.ConnectionInfo:
    """kopf's own login functions: with the official client installed kopf would import it (~59 MiB)."""
    return login(logger, settings)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    logs.configure(SETTINGS.log_level, SETTINGS.log_format)
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="zyra.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="zyra.io")
    settings.posting.level = logging.WARNING  # our own Events say what happened; kopf's would repeat it
    settings.watching.server_timeout = 300
    settings.batching.worker_limit = 64
    memo.api = KubeApi(login(logging.getLogger(__name__), settings))
    memo.storage = storages.from_settings(SETTINGS)
    memo.relay = relays.from_url(SETTINGS.redis_url.get_secret_value() if SETTINGS.redis_url else None)
    memo.catalogue = catalogue.load()
    metrics.serve(SETTINGS.operator_metrics_port)
    memo.resync = asyncio.create_task(_resync_forever(memo))
    memo.trim = asyncio.create_task(memory.trim_forever())


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    memo.resync.cancel()
    memo.trim.cancel()
    await memo.api.close()
    await memo.relay.close()


# ---------------------------------------------------------------- handlers


@kopf.on.resume(kube.GROUP, kube.VERSION, kube.PLURAL)
@kopf.on.create(kube.GROUP, kube.VERSION, kube.PLURAL)
async def spawn_job(
    name: str, namespace: str, spec: kopf.Spec, status: kopf.Status, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    if status.get("phase") in kube.FINAL_PHASES:
        return
    try:
        run_spec = await asyncio.to_thread(_run_spec, name, dict(spec), memo)
    except catalogue.ArgsError as exc:
        allowed = f" (allowed: {', '.join(exc.allowed[:30])})" if exc.allowed else ""
        async with _locks[(namespace, name)]:  # not interleaved with a reconcile that read the run before
            await _patch_status(memo, namespace, name, {
                "phase": "Failed", "reason": "InvalidSpec", "message": f"{exc}{allowed}"[:2000],
                "completionTime": _now(), "observedGeneration": body["metadata"].get("generation"),
            })
        await events.post(memo.api, body, "Warning", "InvalidSpec", str(exc))
        metrics.RUNS_FINISHED.labels(phase="Failed", reason="InvalidSpec").inc()
        return
    manifest = jobs.job_manifest(name, dict(spec), run_spec, SETTINGS)
    kopf.adopt(manifest, owner=body)
    try:
        await memo.api.create(JOBS, namespace, "jobs", manifest)
        metrics.JOBS_CREATED.inc()
        await events.post(memo.api, body, "Normal", "JobCreated", f"Job {name} runs zyra {' '.join(run_spec.argv[:2])}")
    except ApiError as exc:
        if exc.status != 409:  # an existing Job is ours (deterministic name): not an error
            raise kopf.TemporaryError(f"cannot create Job {name}: {exc.reason}", delay=5) from exc
    # no reconcile here: the Job's own events bring one, and under a burst these calls would queue
    # new Jobs behind status updates


@kopf.on.event("batch", "v1", "jobs", labels={kube.RUN_LABEL: kopf.PRESENT})
@kopf.on.event("", "v1", "pods", labels={kube.RUN_LABEL: kopf.PRESENT})
async def track_children(labels: kopf.Labels, namespace: str, memo: kopf.Memo, **_: Any) -> None:
    await reconcile(memo, namespace, labels[kube.RUN_LABEL])


@kopf.on.field(kube.GROUP, kube.VERSION, kube.PLURAL, field="spec.cancel")
async def cancel_run(name: str, namespace: str, new: Any, memo: kopf.Memo, **_: Any) -> None:
    if new:
        await reconcile(memo, namespace, name)


async def _resync_forever(memo: kopf.Memo) -> None:
    """The safety net for missed events, and the clean-up of finished runs: one loop over all runs.
    (A kopf timer per run would put kopf's finalizer on every ZyraRun: runs, and so their namespace,
    could then not be deleted while the operator is away.)"""
    while True:
        await asyncio.sleep(SETTINGS.operator_resync_seconds)
        try:
            items = await memo.api.list(RUNS, SETTINGS.namespace, kube.PLURAL)
        except (ApiError, OSError) as exc:
            log.warning("cannot list ZyraRuns", extra={"error": str(exc)})
            continue
        for obj in items:
            try:
                await _resync(memo, obj["metadata"]["namespace"], obj["metadata"]["name"], obj.get("status") or {})
            except Exception:  # one run's trouble must not stop the loop for the others
                log.exception("resync failed", extra={"run": obj["metadata"]["name"]})


async def _resync(memo: kopf.Memo, namespace: str, name: str, status: dict[str, Any]) -> None:
    if status.get("phase") not in kube.FINAL_PHASES:
        await reconcile(memo, namespace, name)
        return
    finished = _parse_time(status.get("completionTime"))
    if finished is None:
        return
    age = (datetime.now(timezone.utc) - finished).total_seconds()
    if age > SETTINGS.run_retention_seconds:
        await memo.api.delete(RUNS, namespace, kube.PLURAL, name)
    elif age > SETTINGS.job_ttl_seconds:
        await memo.api.delete(JOBS, namespace, "jobs", name, propagation="Background")


# ---------------------------------------------------------------- reconcile


def _run_spec(name: str, spec: dict[str, Any], memo: kopf.Memo) -> RunSpec:
    """Check the spec against zyra's catalogue, as the API does (objects may come from kubectl)."""
    inputs = {i["fileId"]: i["name"] for i in spec.get("inputs") or []}

    def resolve(file_id: str) -> str:
        if file_id in inputs:
            return inputs[file_id]
        found = memo.storage.list(f"uploads/{file_id}/")
        if not found:
            raise catalogue.ArgsError(f"no upload with file_id {file_id}", field="spec.args")
        return found[0].key.rsplit("/", 1)[-1]

    inv = memo.catalogue.invocation(
        spec["stage"], spec.get("command") or None, args=spec.get("args"), argv=spec.get("argv"), resolve_file=resolve
    )
    refs = {i.file_id: i.name for i in inv.inputs} | inputs
    return RunSpec(
        run_id=name,
        stage=inv.stage,
        command=inv.command,
        argv=inv.argv,
        inputs=[{"file_id": fid, "name": n} for fid, n in refs.items()],
        timeout_seconds=int(spec.get("timeoutSeconds") or SETTINGS.default_timeout_seconds),
    )


async def reconcile(memo: kopf.Memo, namespace: str, name: str) -> None:
    async with _locks[(namespace, name)]:
        with metrics.RECONCILE_SECONDS.time():
            await _reconcile(memo, namespace, name)


async def _reconcile(memo: kopf.Memo, namespace: str, name: str) -> None:
    api: KubeApi = memo.api
    run = await api.get(RUNS, namespace, kube.PLURAL, name)
    if run is None or (run.get("status") or {}).get("phase") in kube.FINAL_PHASES:
        return
    job, pods = await asyncio.gather(
        api.get(JOBS, namespace, "jobs", name),
        api.list(CORE, namespace, "pods", labelSelector=f"{kube.RUN_LABEL}={name}"),
    )

    current = run.get("status") or {}
    if job is None and current.get("jobName"):
        out: Outcome | None = Outcome("Failed", "JobDeleted", "its Job was deleted before the run finished")
    else:
        out = decide(run, job, pods)
    if out is None:
        return
    if out.stop_job and job is not None:
        await _stop_job(api, namespace, name, job, out.stop_job)
    if out.delete_pods:
        for pod in pods:
            if not pod["metadata"].get("deletionTimestamp"):
                await api.delete(CORE, namespace, "pods", pod["metadata"]["name"])

    new = {
        "phase": out.phase,
        "reason": out.reason,
        "message": out.message[:2000] if out.message else None,
        "podName": out.pod_name,
        "startTime": out.start_time,
        "jobName": name if job is not None else current.get("jobName"),
        "observedGeneration": run["metadata"].get("generation"),
    }
    if out.final:
        new.update(await asyncio.to_thread(_final_fields, memo, name, out))
        if new.get("stdoutTail") is None and new.get("stderrTail") is None:  # nothing archived: the pod's log
            new["stdoutTail"] = await _pod_log_tail(memo, namespace, out.pod_name, SETTINGS.log_tail_bytes)
    # an empty string is left out: the API server reads it as null, which the schema refuses
    changes = {k: v for k, v in new.items() if v is not None and v != "" and current.get(k) != v}
    if not changes:
        return
    if "phase" in changes:
        changes["conditions"] = _conditions(current.get("conditions") or [], out)
    await _patch_status(memo, namespace, name, changes)
    if out.final:
        await _finished(memo, run, out, changes)
    if "phase" in changes:
        await _announce(memo, run, out)


def _final_fields(memo: kopf.Memo, name: str, out: Outcome) -> dict[str, Any]:
    """What storage knows of a finished run (blocking: runs in a thread)."""
    storage: storages.Storage = memo.storage
    limit = SETTINGS.log_tail_bytes
    fields: dict[str, Any] = {
        "exitCode": out.exit_code,
        "signal": out.signal,
        "completionTime": _now(),
        "logs": {s: storages.log_key(name, s) for s in ("stdout", "stderr")},
        "outputsPrefix": storages.output_prefix(name),
    }
    try:
        fields["stdoutTail"] = storage.tail_bytes(storages.log_key(name, "stdout"), limit).decode(errors="ignore")
        fields["stderrTail"] = storage.tail_bytes(storages.log_key(name, "stderr"), limit).decode(errors="ignore")
    except storages.StorageError:
        fields["stdoutTail"] = fields["stderrTail"] = None
        fields["message"] = ((out.message or "") + " (logs from the pod: none were archived)").strip()[:2000]
    try:
        prefix = storages.output_prefix(name)
        fields["outputs"] = [{"name": o.key[len(prefix):], "size": o.size} for o in storage.list(prefix)]
    except storages.StorageError:
        fields["outputs"] = out.termination.get("outputs") or []
    start = _parse_time(out.start_time)
    if start is not None:
        fields["duration"] = kube.format_duration((datetime.now(timezone.utc) - start).total_seconds())
    return fields


async def _pod_log_tail(memo: kopf.Memo, namespace: str, pod: str | None, limit: int) -> str:
    if not pod:
        return ""
    try:
        text = await memo.api.pod_log(namespace, pod, jobs.RUNNER_CONTAINER, limit * 4)
    except (ApiError, OSError):
        return ""
    return tail(text, limit)


async def _finished(memo: kopf.Memo, run: dict[str, Any], out: Outcome, changes: dict[str, Any]) -> None:
    name = run["metadata"]["name"]
    metrics.RUNS_FINISHED.labels(phase=out.phase, reason=out.reason or "").inc()
    try:
        # the runner publishes "end" itself; a pod that died before it could leaves its clients waiting
        await memo.relay.publish(name, "end", {"status": kube.PHASES[out.phase].value})
        await memo.relay.expire(name, SETTINGS.relay_retention_seconds)
    except relays.RelayUnavailable:
        pass
    url = (run.get("spec") or {}).get("callbackUrl")
    if url and SETTINGS.callback_secret is not None:
        merged = {**run, "status": {**(run.get("status") or {}), **changes}}
        record = kube.run_record(merged)
        task = asyncio.create_task(
            callbacks.deliver(
                url,
                record.public(record.stdout_tail, record.stderr_tail),
                secret=SETTINGS.callback_secret.get_secret_value(),
                max_attempts=SETTINGS.callback_max_attempts,
                timeout=SETTINGS.callback_timeout_seconds,
            )
        )
        _background.add(task)
        task.add_done_callback(_background.discard)


async def _announce(memo: kopf.Memo, run: dict[str, Any], out: Outcome) -> None:
    kind: Literal["Normal", "Warning"] = "Warning" if out.phase == "Failed" else "Normal"
    text = f"{out.phase}" + (f": {out.reason}" if out.reason else "") + (f" (exit code {out.exit_code})" if out.exit_code is not None and out.final else "")
    await events.post(memo.api, run, kind, out.reason or out.phase, text + (f" - {out.message}" if out.message else ""))


def _conditions(existing: list[dict[str, Any]], out: Outcome) -> list[dict[str, Any]]:
    now = _now()
    wanted = {
        "Started": out.phase in ("Running", "Succeeded", "Failed", "Canceled") and out.start_time is not None,
        "Complete": out.final,
        "Succeeded": out.phase == "Succeeded",
    }
    by_type = {c["type"]: c for c in existing}
    result = []
    for ctype, value in wanted.items():
        status = "True" if value else "False"
        old = by_type.get(ctype)
        if old and old.get("status") == status:
            result.append(old)
        else:
            condition = {"type": ctype, "status": status, "reason": out.reason or out.phase, "lastTransitionTime": now}
            if out.message:  # never "": the API server reads an empty string as null here
                condition["message"] = out.message[:300]
            result.append(condition)
    return result


async def _stop_job(api: KubeApi, namespace: str, name: str, job: dict[str, Any], why: str) -> None:
    if ((job.get("metadata") or {}).get("annotations") or {}).get(jobs.STOPPED_ANNOTATION):
        return
    body = {"metadata": {"annotations": {jobs.STOPPED_ANNOTATION: why}}, "spec": {"parallelism": 0}}
    try:
        await api.patch(JOBS, namespace, "jobs", name, body)
    except ApiError as exc:
        if exc.status != 404:
            raise


async def _patch_status(memo: kopf.Memo, namespace: str, name: str, status: dict[str, Any]) -> None:
    try:
        await memo.api.patch(RUNS, namespace, kube.PLURAL, name, {"status": status}, sub="status")
    except ApiError as exc:
        if exc.status != 404:
            raise kopf.TemporaryError(f"cannot write the status of {name}: {exc.reason}: {exc.body}"[:1500], delay=2) from exc


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
