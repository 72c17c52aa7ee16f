"""The few Kubernetes API calls the operator makes, over kopf's own aiohttp, with plain dicts.

The official client costs ~59 MiB on import (a module per API model) and blocks a thread per call; the
operator needs a dozen REST calls. Credentials come from kopf's login functions (service account in a
pod, else the kubeconfig), so the official client is never imported by the operator.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import kopf

__all__ = ["ApiError", "KubeApi", "login"]


class ApiError(Exception):
    def __init__(self, status: int, reason: str, body: str) -> None:
        super().__init__(f"{status} {reason}: {body[:500]}")
        self.status = status
        self.reason = reason
        self.body = body


def login(logger: Any, settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """In a pod: its service account, at the address the kubelet injects (KUBERNETES_SERVICE_HOST/PORT,
    as the official client does: kopf's default name kubernetes.default.svc needs cluster DNS).
    Elsewhere: the kubeconfig."""
    info = kopf.login_with_service_account(logger=logger, settings=settings)
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if info is not None and host:
        info = dataclasses.replace(info, server=f"https://{f'[{host}]' if ':' in host else host}:{port}")
    info = info or kopf.login_with_kubeconfig(logger=logger, settings=settings)
    if info is None:
        raise kopf.LoginError("no service account and no kubeconfig to reach the Kubernetes API")
    return info


class KubeApi:
    def __init__(self, info: kopf.ConnectionInfo) -> None:
        self.server = info.server.rstrip("/")
        # kopf's own translations of the credentials (token or basic auth, CA and client certificates)
        self._session = aiohttp.ClientSession(
            headers={"Accept": "application/json", **info.as_http_headers()},
            auth=info.as_aiohttp_basic_auth(),
            # each open TLS connection holds ~0.3 MiB (asyncio's 256 KiB read buffer, OpenSSL's state);
            # 32 were all open under a burst of 200 runs, and 10 create the Jobs as fast
            connector=aiohttp.TCPConnector(ssl=info.as_ssl_context(), limit=10),
            timeout=aiohttp.ClientTimeout(total=60),
        )

    async def close(self) -> None:
        await self._session.close()

    async def _call(self, method: str, path: str, *, body: Any = None, query: dict[str, Any] | None = None,
                    content_type: str = "application/json", text: bool = False) -> Any:
        url = self.server + path + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body) if body is not None else None
        async with self._session.request(method, url, data=data, headers={"Content-Type": content_type}) as response:
            payload = await response.text()
            if response.status >= 400:
                raise ApiError(response.status, response.reason or "", payload)
            return payload if text else (json.loads(payload) if payload else None)

    # -- paths
    @staticmethod
    def _ns(group_version: str, namespace: str, plural: str, name: str | None = None, sub: str | None = None) -> str:
        base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        path = f"{base}/namespaces/{quote(namespace)}/{plural}"
        if name is not None:
            path += f"/{quote(name)}"
        if sub is not None:
            path += f"/{sub}"
        return path

    # -- calls
    async def get(self, group_version: str, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._call("GET", self._ns(group_version, namespace, plural, name))  # type: ignore[no-any-return]
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, group_version: str, namespace: str | None, plural: str, **query: Any) -> list[dict[str, Any]]:
        if namespace is None:
            base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
            path = f"{base}/{plural}"
        else:
            path = self._ns(group_version, namespace, plural)
        return (await self._call("GET", path, query=query or None))["items"]  # type: ignore[no-any-return]

    async def create(self, group_version: str, namespace: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", self._ns(group_version, namespace, plural), body=body)  # type: ignore[no-any-return]

    async def patch(self, group_version: str, namespace: str, plural: str, name: str, body: dict[str, Any],
                    sub: str | None = None) -> dict[str, Any]:
        return await self._call(  # type: ignore[no-any-return]
            "PATCH", self._ns(group_version, namespace, plural, name, sub), body=body,
            content_type="application/merge-patch+json",
        )

    async def delete(self, group_version: str, namespace: str, plural: str, name: str, propagation: str | None = None) -> None:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation} if propagation else None
        try:
            await self._call("DELETE", self._ns(group_version, namespace, plural, name), body=body)
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def pod_log(self, namespace: str, name: str, container: str, limit_bytes: int) -> str:
        return await self._call(  # type: ignore[no-any-return]
            "GET", self._ns("v1", namespace, "pods", name, "log"),
            query={"container": container, "limitBytes": limit_bytes}, text=True,
        )
