"""Nothing a client sends may make zyra read or write outside the run's work directory: not argument values
(see test_bad_inputs), and not what zyra itself turns into arguments, i.e. the stages of a `zyra run` pipeline
or workflow file, `--set` overrides, and `@file` references. Each refusal is a 422 naming the problem, before
any run exists. (The secret read here would be the API process' own environment: every API key.)"""

from __future__ import annotations

import pytest

from tests.api.util import leaves_nothing
from tests.fixtures.servers import ApiServer


def pipeline(*stages: str) -> bytes:
    return ("stages:\n" + "".join(stages)).encode()


def local_copy(src: str, dest: str = "copy.txt") -> str:
    return f"  - stage: disseminate\n    command: local\n    args:\n      input: \"{src}\"\n      path: {dest}\n"


def refused(api: ApiServer, document: bytes, name: str = "pipe.yaml", extra_argv: list[str] | None = None) -> dict:
    with api.client() as client:
        ref = api.upload(client, name, document)["ref"]
        with leaves_nothing(api):
            response = client.post("/cli/run", json={"stage": "run", "argv": [ref, *(extra_argv or [])]})
    assert response.status_code == 422, response.text
    return response.json()


@pytest.mark.parametrize(
    "document, expected",
    [
        (pipeline(local_copy("/etc/hostname")), "absolute path"),
        (pipeline(local_copy("/proc/self/environ")), "absolute path"),
        (pipeline(local_copy("inputs/../../../../etc/hostname")), "'..' is not allowed"),
        (pipeline(local_copy("h.png", "/tmp/planted.txt")), "absolute path"),
        (pipeline(local_copy("${PWD}/runs.sqlite3")), "environment variables"),
        (pipeline(local_copy("$HOME/../x")), "environment variables"),
        (pipeline("  - stage: run\n    command: \"\"\n    args:\n      config: other.yaml\n"), "run"),
        (b'{"stages": [{"stage": "disseminate", "command": "local", "args": {"input": "/etc/passwd", "path": "p"}}]}', "absolute path"),
        (b"jobs:\n  a:\n    steps:\n      - \"disseminate local --input /etc/passwd p.txt\"\n", "absolute path"),
        (b"jobs:\n  a:\n    steps:\n      - [\"disseminate\", \"local\", \"--input=/etc/passwd\", \"p.txt\"]\n", "absolute path"),
        (b"jobs:\n  a:\n    steps:\n      - \"run evil.yaml\"\n", "run"),
        (b"stages: [unclosed\n", "not a YAML/JSON"),
    ],
)
def test_pipeline_files_are_checked_like_arguments(api: ApiServer, document: bytes, expected: str) -> None:
    error = refused(api, document)
    assert expected in error["detail"], error
    assert error["field"] == "args.config"


def test_set_overrides_are_checked(api: ApiServer) -> None:
    harmless = pipeline(local_copy("a.txt"))
    for extra in (["--set", "input=/etc/passwd"], ["--set=input=../../x"], ["--set", "input=@/etc/passwd"]):
        error = refused(api, harmless, extra_argv=extra)
        assert "not allowed" in error["detail"], (extra, error)


@pytest.mark.parametrize("value", ["@/proc/self/environ", "@../../runs.sqlite3", "@~/.ssh/id_rsa"])
def test_at_file_references_are_paths_too(api: ApiServer, value: str) -> None:
    """`acquire api --data @FILE` sends FILE's content to the URL: a way out unless the path is checked."""
    with leaves_nothing(api), api.client() as client:
        response = client.post(
            "/cli/run",
            json={"stage": "acquire", "command": "api", "args": {"url": "http://127.0.0.1:9/x", "data": value, "method": "POST"}},
        )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "args.data"


@pytest.mark.zyra
def test_a_well_behaved_pipeline_still_runs(api_local: ApiServer) -> None:
    api = api_local
    with api.client() as client:
        document = pipeline(
            local_copy("inputs/good.yaml", "out/one.txt"),  # the pipeline's own file is in inputs/
            "  - stage: acquire\n    command: http\n    args:\n      url: \"http://127.0.0.1:9/data.grib2?x=1\"\n"
            "      pattern: \":TMP:2 m|\\\\.grib2$\"\n      output: never.bin\n",
        )
        # only the first stage is run: the second shows that URLs and regexes with '$' are fine
        up = api.upload(client, "good.yaml", document)
        result = client.post(
            "/cli/run", json={"stage": "run", "args": {"config": up["ref"], "end": 1}}
        ).json()
    assert result["status"] == "success", result
    assert result["outputs"] == [{"name": "out/one.txt", "size": len(document)}]
