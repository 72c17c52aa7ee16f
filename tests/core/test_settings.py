"""Settings from ZYRA_* variables: what a deployment can say, and what refuses to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from zyrak8s_core.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("ZYRA_"):
            monkeypatch.delenv(name)


def test_api_keys_from_csv_single_key_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("from-file\n\n  spaced  \n")
    monkeypatch.setenv("ZYRA_API_KEYS", " a, b ,,c ")
    monkeypatch.setenv("ZYRA_API_KEY", "single")
    monkeypatch.setenv("ZYRA_API_KEYS_FILE", str(keys))
    assert Settings().api_key_values == {"a", "b", "c", "single", "from-file", "spaced"}


def test_a_missing_keys_file_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZYRA_API_KEYS_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="ZYRA_API_KEYS_FILE"):
        Settings()


def test_no_key_refuses_unless_auth_is_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="ZYRA_API_KEYS"):
        Settings().require_auth_configured()
    monkeypatch.setenv("ZYRA_AUTH_DISABLED", "true")
    Settings().require_auth_configured()
    monkeypatch.setenv("ZYRA_AUTH_DISABLED", "false")
    monkeypatch.setenv("ZYRA_API_KEYS", "k")
    Settings().require_auth_configured()


@pytest.mark.parametrize("value, expected", [("5/second", "5/second"), ("10 per minute", "10 per minute"), ("off", ""), ("OFF", ""), ("none", "")])
def test_rate_limit_values(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv("ZYRA_RATE_LIMIT", value)
    assert Settings().rate_limit == expected


def test_an_empty_rate_limit_keeps_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZYRA_RATE_LIMIT", "")
    assert Settings().rate_limit == "120/minute"


@pytest.mark.parametrize("value", ["fast", "0", "-1/minute", "10/fortnight"])
def test_a_bad_rate_limit_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ZYRA_RATE_LIMIT", value)
    with pytest.raises(ValueError, match="ZYRA_RATE_LIMIT"):
        Settings()


def test_other_bad_values_fail_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZYRA_MAX_CONCURRENT_RUNS", "0")
    with pytest.raises(ValueError, match="ZYRA_MAX_CONCURRENT_RUNS"):
        Settings()
    monkeypatch.setenv("ZYRA_MAX_CONCURRENT_RUNS", "2")
    monkeypatch.setenv("ZYRA_BACKEND", "cloud")
    with pytest.raises(ValueError, match="backend"):
        Settings()

@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"ZYRA_WORKERS": "0"}, "at least 1"),
        ({"ZYRA_WORKERS": "2"}, "needs ZYRA_BACKEND=kubernetes"),
        ({"ZYRA_WORKERS": "2", "ZYRA_BACKEND": "kubernetes"}, "needs ZYRA_REDIS_URL"),
    ],
)
def test_several_workers_need_the_kubernetes_backend_and_redis(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], complaint: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=complaint):
        Settings()


def test_several_workers_on_the_kubernetes_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZYRA_WORKERS", "4")
    monkeypatch.setenv("ZYRA_BACKEND", "kubernetes")
    monkeypatch.setenv("ZYRA_REDIS_URL", "redis://127.0.0.1:6379/0")
    assert Settings().workers == 4
