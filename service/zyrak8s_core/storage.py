"""Object storage for uploads, run inputs, outputs and archived logs: one bucket (or directory), prefixes.

    uploads/<file_id>/<name>
    runs/<run_id>/outputs/<relative path>
    runs/<run_id>/logs/{stdout,stderr}

Two backends with one interface: a local directory (the embedded default) and any S3-compatible server
through boto3. Calls are blocking; async callers run them in a worker thread.
"""

from __future__ import annotations

import abc
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from zyrak8s_core.settings import Settings

__all__ = [
    "ObjectInfo",
    "Storage",
    "LocalStorage",
    "S3Storage",
    "StorageError",
    "NotFound",
    "from_settings",
    "upload_key",
    "output_prefix",
    "log_key",
]

CHUNK = 1024 * 1024


class StorageError(Exception):
    """The storage backend failed or refused an operation."""


class NotFound(StorageError):
    """No object under that key."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


def upload_key(file_id: str, name: str) -> str:
    return f"uploads/{file_id}/{name}"


def output_prefix(run_id: str) -> str:
    return f"runs/{run_id}/outputs/"


def log_key(run_id: str, stream: str) -> str:
    return f"runs/{run_id}/logs/{stream}"


def _check_key(key: str) -> str:
    parts = PurePosixPath(key).parts
    if not key or key.startswith("/") or ".." in parts or "\\" in key:
        raise StorageError(f"invalid storage key {key!r}")
    return key


class Storage(abc.ABC):
    """What the API, the runner and the operator need from object storage."""

    @abc.abstractmethod
    def put_file(self, key: str, path: Path) -> None: ...

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def get_file(self, key: str, path: Path) -> None:
        """Copy the object to a local file; NotFound if absent."""

    @abc.abstractmethod
    def iter_bytes(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """Stream the object; NotFound (raised on the call, not lazily) if absent."""

    @abc.abstractmethod
    def list(self, prefix: str) -> list[ObjectInfo]: ...

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> None: ...

    def tail_bytes(self, key: str, limit: int) -> bytes:
        """The last `limit` bytes of an object; NotFound if absent."""
        return self.get_bytes(key)[-limit:]

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self.iter_bytes(key))

    def exists(self, key: str) -> bool:
        return any(o.key == key for o in self.list(key))

    def check(self) -> None:
        """Raise StorageError when the backend cannot be used (readiness)."""


class LocalStorage(Storage):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put_file(self, key: str, path: Path) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.partial")
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)

    def move_file(self, key: str, path: Path) -> None:
        """Take ownership of a local file (a rename when on the same filesystem)."""
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), dest)

    def put_bytes(self, key: str, data: bytes) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.partial")
        tmp.write_bytes(data)
        os.replace(tmp, dest)

    def get_file(self, key: str, path: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise NotFound(key)
        shutil.copyfile(src, path)

    def iter_bytes(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        src = self._path(key)
        try:
            fh = src.open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(key) from None
        return _iter_file(fh, chunk_size)

    def tail_bytes(self, key: str, limit: int) -> bytes:
        src = self._path(key)
        try:
            with src.open("rb") as fh:
                fh.seek(max(0, src.stat().st_size - limit))
                return fh.read()
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(key) from None

    def list(self, prefix: str) -> list[ObjectInfo]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        # a string prefix, as in S3: "runs/r1" also covers "runs/r10/...", so look in the parent directory
        start = base if prefix.endswith("/") or not prefix.strip("/") else base.parent
        if not start.is_dir():
            return []
        found = []
        for path in start.rglob("*"):
            if path.is_file() and not path.name.endswith(".partial"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(ObjectInfo(key, path.stat().st_size))
        return sorted(found, key=lambda o: o.key)

    def delete_prefix(self, prefix: str) -> None:
        if not prefix.endswith("/"):  # a string prefix, as in S3: exactly what list() shows under it
            for obj in self.list(prefix):
                self._path(obj.key).unlink(missing_ok=True)
            return
        target = self._path(prefix.rstrip("/"))
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        elif target.is_file():
            target.unlink(missing_ok=True)

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"storage directory {self.root} is not writable")


def _iter_file(fh: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    with fh:
        while chunk := fh.read(chunk_size):
            yield chunk


class S3Storage(Storage):
    def __init__(
        self,
        *,
        bucket: str,
        endpoint: str | None,
        access_key: str | None,
        secret_key: str | None,
        region: str = "us-east-1",
        path_style: bool = True,
        create_bucket: bool = True,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        config = Config(
            s3={"addressing_style": "path" if path_style else "auto"},
            signature_version="s3v4",
            retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=32,
        )
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=region,
            config=config,
        )
        if create_bucket:
            self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise StorageError(f"S3 bucket {self.bucket!r}: {code or exc}") from exc
            self.client.create_bucket(Bucket=self.bucket)

    def _translate(self, exc: Exception, key: str) -> StorageError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                return NotFound(key)
            return StorageError(f"S3 {code} on {key!r}: {exc.response.get('Error', {}).get('Message', '')}")
        return StorageError(f"S3 error on {key!r}: {exc}")

    def put_file(self, key: str, path: Path) -> None:
        try:
            self.client.upload_file(str(path), self.bucket, _check_key(key))
        except Exception as exc:  # boto raises several unrelated types
            raise self._translate(exc, key) from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=_check_key(key), Body=data)
        except Exception as exc:
            raise self._translate(exc, key) from exc

    def get_file(self, key: str, path: Path) -> None:
        try:
            self.client.download_file(self.bucket, _check_key(key), str(path))
        except Exception as exc:
            raise self._translate(exc, key) from exc

    def iter_bytes(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=_check_key(key))["Body"]
        except Exception as exc:
            raise self._translate(exc, key) from exc
        return _iter_body(body, chunk_size)

    def tail_bytes(self, key: str, limit: int) -> bytes:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=_check_key(key), Range=f"bytes=-{limit}")
        except Exception as exc:
            from botocore.exceptions import ClientError

            if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""  # an empty object
            raise self._translate(exc, key) from exc
        return obj["Body"].read()

    def list(self, prefix: str) -> list[ObjectInfo]:
        found = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                found.extend(ObjectInfo(o["Key"], o["Size"]) for o in page.get("Contents", []))
        except Exception as exc:
            raise self._translate(exc, prefix) from exc
        return sorted(found, key=lambda o: o.key)

    def delete_prefix(self, prefix: str) -> None:
        keys = [o.key for o in self.list(prefix)]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise self._translate(exc, self.bucket) from exc


def _iter_body(body: object, chunk_size: int) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(chunk_size)  # type: ignore[attr-defined]
    finally:
        body.close()  # type: ignore[attr-defined]


def from_settings(settings: Settings) -> Storage:
    if settings.s3_bucket:
        return S3Storage(
            bucket=settings.s3_bucket,
            endpoint=settings.s3_endpoint,
            access_key=settings.s3_access_key.get_secret_value() if settings.s3_access_key else None,
            secret_key=settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None,
            region=settings.s3_region,
            path_style=settings.s3_path_style,
        )
    return LocalStorage(settings.data_dir / "storage")
