"""One settings object for every process of the project, read from `ZYRA_*` environment variables.

The API, the operator and the runner all read the same class; each uses the fields it needs.
A bad configuration fails at start-up with a message naming the variable, not halfway through a request.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

__all__ = ["Settings", "get_settings"]


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZYRA_", env_ignore_empty=True, extra="ignore")

    # -- serving
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1  # uvicorn worker processes; more than one needs the kubernetes backend and Redis
    graceful_timeout_seconds: float = 30.0  # on SIGTERM, in-flight requests get this long to finish
    keepalive_timeout_seconds: float = 5.0  # idle HTTP keep-alive connections are closed after this
    forwarded_allow_ips: str = "127.0.0.1"  # proxies whose X-Forwarded-For/-Proto are trusted ("*": any)

    # -- where runs execute and where their records live
    backend: Literal["local", "kubernetes"] = "local"
    data_dir: Path = Path("var")  # embedded default: records, local storage, work directories

    # -- auth
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    api_key: SecretStr | None = None  # zyra's own single-key setting, accepted too
    api_keys_file: Path | None = None  # one key per line; how a Kubernetes Secret is mounted
    auth_disabled: bool = False  # explicit opt-out, for local development only
    rate_limit: str = "120/minute"  # per API key, `limits` notation; "off" turns it off

    # -- storage: a local directory unless an S3 bucket is given
    s3_endpoint: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_path_style: bool = True

    # -- relay: in-process unless Redis is given
    redis_url: SecretStr | None = None
    relay_max_entries: int = 100_000  # per run; a run printing more keeps its newest entries live
    relay_retention_seconds: int = 3600  # how long a finished run's live stream stays replayable

    # -- runs
    max_concurrent_runs: int = 2
    max_queued_runs: int = 100
    default_timeout_seconds: int = 3600
    max_timeout_seconds: int = 24 * 3600
    cancel_grace_seconds: float = 5.0
    sync_wait_seconds: float = 600.0  # a sync request gives up waiting (the run goes on) after this
    upload_max_bytes: int = 2 * 1024**3
    log_tail_bytes: int = 16 * 1024  # status tails in records and ZyraRun objects
    warm_workers: bool = True  # fork runs from a process that has already imported zyra
    zyra_python: str | None = None  # interpreter with zyra installed; default: the running one

    # -- callbacks
    callback_secret: SecretStr | None = None
    callback_max_attempts: int = 5
    callback_timeout_seconds: float = 10.0

    # -- websocket
    ws_keepalive_seconds: float = 15.0

    # -- logs
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"

    # -- kubernetes backend and operator
    namespace: str | None = None  # default: the pod's own namespace, else "default"
    runner_image: str = "zyra-k8s/runner:latest"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    runner_secret: str = "zyra-runner"  # Secret with storage and relay credentials for Job pods
    runner_service_account: str = "zyra-runner"
    job_ttl_seconds: int = 600  # finished Jobs and pods are removed after this
    job_backoff_limit: int = 0
    run_volume_size: str = "10Gi"  # the emptyDir a run's inputs and outputs live in
    run_retention_seconds: int = 7 * 24 * 3600  # ZyraRuns are deleted after this; storage keeps its own rules
    operator_resync_seconds: float = 30.0  # every unfinished run is looked at again this often
    operator_metrics_port: int = 8080
    default_cpu_request: str = "100m"
    default_cpu_limit: str = "1"
    default_memory_request: str = "256Mi"
    default_memory_limit: str = "1Gi"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys_from_csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"ZYRA_LOG_LEVEL={value!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        # an empty ZYRA_RATE_LIMIT is ignored (env_ignore_empty), so "off" is how the environment turns it off;
        # a value `limits` cannot parse fails here, at start-up, not in every request
        value = value.strip()
        if value.lower() in ("", "off", "none", "false"):
            return ""
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError(f"ZYRA_RATE_LIMIT={value!r} is not a rate such as '120/minute' (or 'off')") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if self.api_key is not None:
            self.api_keys = [*self.api_keys, self.api_key]
        if self.api_keys_file is not None:
            try:
                lines = self.api_keys_file.read_text().splitlines()
            except OSError as exc:
                raise ValueError(f"ZYRA_API_KEYS_FILE={self.api_keys_file}: {exc.strerror}") from exc
            self.api_keys = [*self.api_keys, *(SecretStr(k.strip()) for k in lines if k.strip())]
        if self.s3_bucket and not (self.s3_access_key and self.s3_secret_key) and self.s3_endpoint:
            raise ValueError("ZYRA_S3_BUCKET with ZYRA_S3_ENDPOINT needs ZYRA_S3_ACCESS_KEY and ZYRA_S3_SECRET_KEY")
        if self.max_concurrent_runs < 1:
            raise ValueError("ZYRA_MAX_CONCURRENT_RUNS must be at least 1")
        self._check_workers()
        return self

    def _check_workers(self) -> None:
        if self.workers < 1:
            raise ValueError("ZYRA_WORKERS must be at least 1")
        if self.workers == 1:
            return
        # the embedded backend keeps its executor and queue in the process; rate limits live in Redis only
        if self.backend != "kubernetes":
            raise ValueError(
                f"ZYRA_WORKERS={self.workers} needs ZYRA_BACKEND=kubernetes: the embedded backend runs its queue "
                "inside one process (scale it with ZYRA_MAX_CONCURRENT_RUNS instead)"
            )
        if self.redis_url is None:
            raise ValueError(f"ZYRA_WORKERS={self.workers} needs ZYRA_REDIS_URL: workers share rate limits and live logs through Redis")

    @property
    def api_key_values(self) -> frozenset[str]:
        return frozenset(k.get_secret_value() for k in self.api_keys)

    def require_auth_configured(self) -> None:
        """Refuse to serve with no key unless auth was turned off on purpose."""
        if not self.api_keys and not self.auth_disabled:
            raise RuntimeError(
                "no API key configured: set ZYRA_API_KEYS (comma-separated) or ZYRA_API_KEYS_FILE, "
                "or ZYRA_AUTH_DISABLED=true for local development"
            )


@functools.lru_cache
def get_settings() -> Settings:
    return Settings()
