"""Bad requests: each gets a clear 4xx naming what is wrong (and what is allowed), and leaves no run record,
no stored object and no scratch file behind (checked on the SQLite file, the storage directory or S3 bucket,
and the server's tmp/ and work/ directories)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.api.util import NO_NET, leaves_nothing
from tests.fixtures.servers import ApiServer, npy_bytes

UNKNOWN_FILE = "file_id:" + "0" * 32


@pytest.fixture
def upload_ref(api: ApiServer) -> str:
    """A real upload, so that only the part under test is wrong."""
    with api.client() as client:
        return api.upload(client, "in.npy", npy_bytes())["ref"]


def post_run(api: ApiServer, body: Any) -> Any:
    with leaves_nothing(api), api.client() as client:
        return client.post("/cli/run", json=body)


def test_unknown_stage_names_the_stages(api: ApiServer) -> None:
    response = post_run(api, {"stage": "paint", "command": "heatmap", "args": {}})
    assert response.status_code == 422
    error = response.json()
    assert "unknown stage 'paint'" in error["detail"] and error["field"] == "stage"
    assert {"acquire", "process", "visualize", "render", "import", "export", "run"} <= set(error["allowed"])


def test_unknown_command_names_the_commands(api: ApiServer) -> None:
    response = post_run(api, {"stage": "visualize", "command": "sketch", "args": {}})
    assert response.status_code == 422
    error = response.json()
    assert "unknown command 'sketch'" in error["detail"] and error["field"] == "command"
    assert {"heatmap", "timeseries", "contour"} <= set(error["allowed"])
    missing = post_run(api, {"stage": "visualize", "args": {}})
    assert missing.status_code == 422 and "heatmap" in missing.json()["allowed"]
    # `run` takes no command
    extra = post_run(api, {"stage": "run", "command": "x", "args": {}})
    assert extra.status_code == 422 and "takes no command" in extra.json()["detail"]


def test_unknown_option_names_the_options(api: ApiServer, upload_ref: str) -> None:
    for body, field, name in (
        ({"args": {"input": upload_ref, "colour": "red"}}, "args.colour", "'colour'"),
        ({"args": {"input": upload_ref, "--colour": "red"}}, "args.--colour", "'--colour'"),
        ({"argv": ["--input", upload_ref, "--colour", "red"]}, "argv[2]", "'--colour'"),
        ({"argv": ["--input", upload_ref, "--colour=red"]}, "argv[2]", "'--colour'"),
        ({"argv": ["--input", upload_ref, "-z"]}, "argv[2]", "'-z'"),
    ):
        response = post_run(api, {"stage": "visualize", "command": "heatmap", **body})
        assert response.status_code == 422, body
        error = response.json()
        assert f"unknown option {name} for visualize heatmap" in error["detail"]
        assert error["field"] == field
        assert {"input", "output", "no-coastline", "cmap"} <= set(error["allowed"])


@pytest.mark.parametrize(
    "args, expected",
    [
        ({"width": "wide"}, "expected an integer"),
        ({"width": 1.5}, "expected an integer"),
        ({"width": True}, "expected a int value, got bool"),
        ({"vmin": "low"}, "expected a number"),
        ({"no-coastline": "yes"}, "is a flag; give true or false"),
        ({"no-coastline": 1}, "is a flag"),
        ({"cmap": ["viridis", "magma"]}, "takes one value, not a list"),
        ({"cmap": {"name": "viridis"}}, "expected a str value, got dict"),
        ({"cmap": None}, "expected a str value, got NoneType"),
        ({"extent": []}, "needs a value"),
        ({"legend-orientation": "diagonal"}, "is not one of"),
    ],
)
def test_wrong_value_types(api: ApiServer, upload_ref: str, args: dict[str, Any], expected: str) -> None:
    response = post_run(api, {"stage": "visualize", "command": "heatmap", "args": {"input": upload_ref, **NO_NET, **args}})
    assert response.status_code == 422
    error = response.json()
    assert expected in error["detail"], error
    assert error["field"] == "args." + next(iter(args))


def test_a_choice_error_lists_the_choices(api: ApiServer, upload_ref: str) -> None:
    response = post_run(
        api, {"stage": "process", "command": "convert-format", "args": {"file_or_url": upload_ref, "format": "jpeg"}}
    )
    assert response.status_code == 422
    assert response.json()["allowed"] == ["netcdf", "geotiff"]
    missing = post_run(api, {"stage": "process", "command": "convert-format", "args": {"file_or_url": upload_ref}})
    assert missing.status_code == 422 and "missing required argument 'format'" in missing.json()["detail"]


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"stage": 5, "command": "heatmap"}, "stage"),
        ({"stage": "visualize", "command": "heatmap", "mode": "later"}, "mode"),
        ({"stage": "visualize", "command": "heatmap", "timeout": 0}, "timeout"),
        ({"stage": "visualize", "command": "heatmap", "timeout": "soon"}, "timeout"),
        ({"stage": "visualize", "command": "heatmap", "args": ["--input", "x"]}, "args"),
        ({"stage": "visualize", "command": "heatmap", "argv": "--input x"}, "argv"),
        ({"stage": "visualize", "command": "heatmap", "argv": ["--width", 5]}, "argv"),
        ({"stage": "visualize", "command": "heatmap", "priority": "high"}, "priority"),
        ({"command": "heatmap"}, "stage"),
    ],
)
def test_malformed_request_bodies(api: ApiServer, body: dict[str, Any], expected: str) -> None:
    response = post_run(api, body)
    assert response.status_code == 422
    locations = [".".join(str(p) for p in e["loc"]) for e in response.json()["detail"]]
    assert any(expected in loc for loc in locations), locations


def test_not_json_and_conflicting_fields(api: ApiServer, upload_ref: str) -> None:
    with leaves_nothing(api), api.client() as client:
        response = client.post("/cli/run", content=b"stage=visualize", headers={"Content-Type": "application/json"})
        assert response.status_code == 422
        both = client.post(
            "/cli/run",
            json={"stage": "visualize", "command": "heatmap", "args": {"input": upload_ref}, "argv": ["--input", upload_ref]},
        )
        assert both.status_code == 422 and "either args or argv" in both.json()["detail"]
        too_long = client.post(
            "/cli/run", json={"stage": "visualize", "command": "heatmap", "args": {"input": upload_ref}, "timeout": 10**9}
        )
        assert too_long.status_code == 422 and "timeout may be at most" in too_long.json()["detail"]
        callback = client.post(
            "/cli/run",
            json={"stage": "visualize", "command": "heatmap", "args": {"input": upload_ref}, "callback_url": "ftp://example.org/x"},
        )
        assert callback.status_code == 422 and callback.json()["field"] == "callback_url"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("../in.npy", "'..' is not allowed"),
        ("inputs/../../../etc/passwd", "'..' is not allowed"),
        ("..\\..\\secret", "'..' is not allowed"),
        ("/etc/passwd", "absolute path"),
        ("~/.ssh/id_rsa", "absolute path"),
        ("~root", "absolute path"),
        ("C:\\Windows\\win.ini", "absolute path"),
        ("file:///etc/passwd", "file: URLs are not allowed"),
        ("FILE:/etc/passwd", "file: URLs are not allowed"),
        ("http://host/../../x", "'..' is not allowed"),
        ("a\x00b", "NUL byte"),
        ("x" * 5000, "longer than"),
    ],
)
def test_path_tricks_in_args(api: ApiServer, value: str, expected: str) -> None:
    for key in ("input", "output"):
        response = post_run(api, {"stage": "visualize", "command": "heatmap", "args": {key: value, **NO_NET}})
        assert response.status_code == 422, (key, value)
        assert expected in response.json()["detail"]
        assert response.json()["field"] == f"args.{key}"


@pytest.mark.parametrize(
    "argv",
    [
        ["--input", "/etc/passwd", "--output", "h.png"],
        ["--input=/etc/passwd"],
        ["--input", "../../in.npy"],
        ["--output=../h.png"],
        ["--output", "sub/../../h.png"],
        ["--input", "~/x.npy"],
        ["--output=file:/tmp/x.png"],
        ["/etc/passwd"],
        ["..", "--input", "x.npy"],
    ],
)
def test_path_tricks_in_argv(api: ApiServer, upload_ref: str, argv: list[str]) -> None:
    response = post_run(api, {"stage": "visualize", "command": "heatmap", "argv": argv})
    assert response.status_code == 422, argv
    error = response.json()
    assert error["field"].startswith("argv[")
    assert "not allowed" in error["detail"]
    assert any(why in error["detail"] for why in ("work directory", "file: URLs")), error


def test_path_tricks_in_positionals(api: ApiServer) -> None:
    for args in ({"config": "/etc/passwd"}, {"config": "../pipe.yaml"}):
        response = post_run(api, {"stage": "run", "args": args})
        assert response.status_code == 422 and response.json()["field"] == "args.config"
    response = post_run(api, {"stage": "process", "command": "convert-format", "args": {"file_or_url": "--stdout", "format": "netcdf"}})
    assert response.status_code == 422 and "may not start with '-'" in response.json()["detail"]


@pytest.mark.parametrize(
    "ref, expected",
    [
        (UNKNOWN_FILE, "no upload with file_id " + "0" * 32),
        ("file_id:not-a-file-id", "malformed file id"),
        ("file_id:../../etc", "malformed file id"),
        ("file_id:" + "A" * 32, "malformed file id"),
        ("file_id:", "malformed file id"),
    ],
)
def test_missing_or_malformed_file_ids(api: ApiServer, ref: str, expected: str) -> None:
    for body in (
        {"args": {"input": ref, "output": "h.png", **NO_NET}},
        {"argv": ["--input", ref]},
        {"argv": [f"--input={ref}"]},
    ):
        response = post_run(api, {"stage": "visualize", "command": "heatmap", **body})
        assert response.status_code == 422, body
        assert expected in response.json()["detail"]


def test_two_uploads_with_one_name_are_refused(api: ApiServer) -> None:
    with api.client() as client:
        first = api.upload(client, "same.npy", npy_bytes(seed=1))["ref"]
        second = api.upload(client, "same.npy", npy_bytes(seed=2))["ref"]
    response = post_run(api, {"stage": "visualize", "command": "heatmap", "args": {"input": first, "output": second}})
    assert response.status_code == 422 and "two inputs named 'same.npy'" in response.json()["detail"]


def multipart(name: str, data: bytes, boundary: str = "zt-boundary-0123456789") -> tuple[bytes, str]:
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_oversized_uploads_are_413(api: ApiServer) -> None:
    limit = int(api.env["ZYRA_UPLOAD_MAX_BYTES"])
    with leaves_nothing(api), api.client() as client:
        # announced too large by Content-Length: refused before reading the body
        response = client.post("/upload", files={"file": ("big.bin", os.urandom(limit * 10))})
        assert response.status_code == 413 and str(limit) in response.json()["detail"]
        # just over the limit (within the multipart allowance): refused once the file part is measured
        response = client.post("/upload", files={"file": ("big.bin", os.urandom(limit + 1))})
        assert response.status_code == 413
        # streamed without a length (chunked): refused while it streams
        body, content_type = multipart("big.bin", os.urandom(limit * 10))
        chunks = (body[i : i + 16384] for i in range(0, len(body), 16384))
        response = client.post("/upload", content=chunks, headers={"Content-Type": content_type})
        assert response.status_code == 413
        assert "transfer-encoding" in response.request.headers
    with api.client() as client:  # exactly the limit is fine
        assert api.upload(client, "limit.bin", os.urandom(limit))["size"] == limit


@pytest.mark.parametrize("name", [".hidden", "..", "a b.npy", "-rf", "semi;colon", "dollar$x", "é.npy", "x" * 201, "a\"b"])
def test_bad_upload_file_names_are_400(api: ApiServer, name: str) -> None:
    with leaves_nothing(api), api.client() as client:
        response = client.post("/upload", files={"file": (name, b"data")})
        assert response.status_code == 400, response.text
        assert "is not allowed" in response.json()["detail"]


def test_upload_directory_parts_are_dropped(api: ApiServer) -> None:
    """Clients may send a path as the file name (RFC 7578 says to ignore it): only the base name is kept,
    so the file cannot land outside its upload's prefix."""
    with api.client() as client:
        for sent in ("../../escape.npy", "C:\\Users\\me\\escape.npy", "/etc/escape.npy"):
            up = api.upload(client, sent, b"x")
            assert up["filename"] == "escape.npy" and up["path"] == "inputs/escape.npy"
            assert api.stored_keys(f"uploads/{up['file_id']}/") == [f"uploads/{up['file_id']}/escape.npy"]
    assert not (api.data_dir.parent / "escape.npy").exists() and not (api.data_dir / "escape.npy").exists()


def test_uploads_that_are_not_one_file_part(api: ApiServer) -> None:
    with leaves_nothing(api), api.client() as client:
        not_multipart = client.post("/upload", content=b"raw bytes", headers={"Content-Type": "application/octet-stream"})
        assert not_multipart.status_code == 415 and "multipart/form-data" in not_multipart.json()["detail"]
        wrong_field = client.post("/upload", files={"document": ("a.npy", b"x")})
        assert wrong_field.status_code == 422 and "named 'file'" in wrong_field.json()["detail"]
        two_files = client.post("/upload", files=[("file", ("a.npy", b"x")), ("file", ("b.npy", b"y"))])
        assert two_files.status_code == 422
        no_name = client.post("/upload", files={"file": ("", b"x")})
        assert no_name.status_code in (400, 422)
        body, content_type = multipart("a.npy", b"x")
        truncated = client.post("/upload", content=body[: len(body) // 2 + 20], headers={"Content-Type": content_type})
        assert 400 <= truncated.status_code < 500


def test_unknown_jobs_are_404(api: ApiServer) -> None:
    with leaves_nothing(api), api.client() as client:
        for method, path in (
            ("GET", "/jobs/run-0123456789abcdef"),
            ("DELETE", "/jobs/run-0123456789abcdef"),
            ("GET", "/jobs/run-0123456789abcdef/download"),
            ("GET", "/jobs/..%2F..%2Fetc/download"),
        ):
            response = client.request(method, path)
            assert response.status_code == 404, (method, path)
