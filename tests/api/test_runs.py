"""Real zyra commands through the real API (uvicorn subprocess), on synthetic inputs made here, against both
the local backends and S3 (SeaweedFS) + Redis."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.api.util import heatmap_args, is_png, leaves_nothing
from tests.fixtures.servers import ApiServer, csv_bytes, grib2_bytes, npy_bytes

pytestmark = pytest.mark.zyra


def test_heatmap_from_an_uploaded_npy_sync(api: ApiServer) -> None:
    with api.client() as client:
        up = api.upload(client, "grid.npy", npy_bytes())
        assert up["filename"] == "grid.npy" and up["size"] == len(npy_bytes())
        assert up["path"] == "inputs/grid.npy" and up["ref"] == f"file_id:{up['file_id']}"
        assert api.stored_keys(f"uploads/{up['file_id']}/") == [f"uploads/{up['file_id']}/grid.npy"]

        response = client.post("/cli/run", json={"stage": "visualize", "command": "heatmap", "args": heatmap_args(up["ref"])})
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["status"] == "success", result
        assert result["exit_code"] == 0 and result["reason"] == "Completed"
        assert "h.png" in result["stderr"]  # zyra logs the file it wrote
        assert [o["name"] for o in result["outputs"]] == ["h.png"]
        job_id = result["job_id"]

        job = client.get(f"/jobs/{job_id}").json()
        assert job["status"] == "succeeded" and job["exit_code"] == 0 and job["signal"] is None
        assert job["argv"] == [
            "visualize", "heatmap", "--input=inputs/grid.npy", "--output=h.png", "--no-coastline", "--no-borders",
        ]
        assert job["stderr"] == result["stderr"] and job["stdout"] == result["stdout"]
        assert job["started_at"] and job["finished_at"] and job["duration_seconds"] >= 0

        png = client.get(f"/jobs/{job_id}/download")
        assert png.status_code == 200
        assert png.headers["content-type"] == "image/png"
        assert 'filename="h.png"' in png.headers["content-disposition"]
        assert is_png(png.content) and len(png.content) == result["outputs"][0]["size"]

    # the run's logs and output are in storage; its work directory is gone; the input is not an output
    assert api.stored_keys(f"runs/{job_id}/") == [
        f"runs/{job_id}/logs/stderr", f"runs/{job_id}/logs/stdout", f"runs/{job_id}/outputs/h.png",
    ]
    assert not (api.data_dir / "work" / job_id).exists()


def test_heatmap_async_then_poll(api: ApiServer) -> None:
    with api.client() as client:
        up = api.upload(client, "a.npy", npy_bytes(seed=3))
        response = client.post(
            "/cli/run",
            json={"stage": "render", "command": "heatmap", "args": heatmap_args(up["ref"], "async.png"), "mode": "async"},
        )
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "accepted"
        job = api.wait_job(client, response.json()["job_id"])
        assert job["status"] == "succeeded", job
        assert job["stage"] == "render"  # the alias is run as given
        assert [o["name"] for o in job["outputs"]] == ["async.png"]


def test_timeseries_from_a_csv_with_argv(api: ApiServer) -> None:
    with api.client() as client:
        up = api.upload(client, "series.csv", csv_bytes())
        response = client.post(
            "/cli/run",
            json={
                "stage": "visualize", "command": "timeseries",
                "argv": ["--input", up["ref"], "--x", "time", "--y", "value", "--output", "ts.png"],
            },
        )
        result = response.json()
        assert result["status"] == "success", result
        assert result["outputs"][0]["name"] == "ts.png"
        png = client.get(f"/jobs/{result['job_id']}/download", params={"file": "ts.png"})
        assert png.status_code == 200 and is_png(png.content)


def test_convert_format_grib2_to_netcdf(api: ApiServer, tmp_path) -> None:
    import xarray as xr

    with api.client() as client:
        up = api.upload(client, "t2m.grib2", grib2_bytes())
        response = client.post(
            "/cli/run",
            json={
                "stage": "process", "command": "convert-format",
                "args": {"file_or_url": up["ref"], "format": "netcdf", "output": "t2m.nc"},
            },
        )
        result = response.json()
        assert result["status"] == "success", result
        assert [o["name"] for o in result["outputs"]] == ["t2m.nc"]
        nc = client.get(f"/jobs/{result['job_id']}/download", params={"file": "t2m.nc"})
        assert nc.status_code == 200
    path = tmp_path / "t2m.nc"
    path.write_bytes(nc.content)
    with xr.open_dataset(path) as ds:
        assert ds["t2m"].shape == (4, 8)
        assert float(ds["t2m"].min()) == pytest.approx(250.0, abs=0.5)
        assert float(ds["t2m"].max()) == pytest.approx(300.0, abs=0.5)


def test_a_failing_command_reports_its_error(api: ApiServer) -> None:
    with api.client() as client:
        response = client.post(
            "/cli/run", json={"stage": "visualize", "command": "heatmap", "args": heatmap_args("missing.npy")}
        )
        assert response.status_code == 200
        result = response.json()
        assert result["status"] == "error"
        assert result["exit_code"] == 1 and result["reason"] == "Error"
        assert "FileNotFoundError" in result["stderr"] and "missing.npy" in result["stderr"]
        assert result["outputs"] == []
        job = client.get(f"/jobs/{result['job_id']}").json()
        assert job["status"] == "failed" and job["exit_code"] == 1 and job["reason"] == "Error"
        assert "exited with code 1" in job["message"]
        download = client.get(f"/jobs/{result['job_id']}/download")
        assert download.status_code == 404 and "no output" in download.json()["detail"]


def test_a_usage_error_is_zyras_exit_code_2(api: ApiServer) -> None:
    """Arguments the catalogue cannot judge (a stray positional) reach zyra, whose parser refuses them."""
    with api.client() as client:
        up = api.upload(client, "u.npy", npy_bytes())
        response = client.post(
            "/cli/run",
            json={"stage": "visualize", "command": "heatmap", "argv": [f"--input={up['ref']}", "stray-positional"]},
        )
        result = response.json()
        assert result["status"] == "error" and result["exit_code"] == 2, result
        assert "unrecognized arguments: stray-positional" in result["stderr"]
        assert client.get(f"/jobs/{result['job_id']}").json()["status"] == "failed"


def test_download_one_file_or_a_zip_of_all(api: ApiServer) -> None:
    with api.client() as client:
        up = api.upload(client, "z.npy", npy_bytes(seed=7))
        result = client.post(
            "/cli/run",
            json={
                "stage": "visualize", "command": "heatmap",
                "args": heatmap_args(up["ref"], "main.png", **{"legend-file": "legend.png", "vmin": 0, "vmax": 1}),
            },
        ).json()
        assert result["status"] == "success", result
        job_id = result["job_id"]
        assert sorted(o["name"] for o in result["outputs"]) == ["legend.png", "main.png"]

        single = {}
        for name in ("main.png", "legend.png"):
            response = client.get(f"/jobs/{job_id}/download", params={"file": name})
            assert response.status_code == 200 and is_png(response.content)
            single[name] = response.content

        for params in ({"zip": "1"}, {}):  # several outputs and no ?file=: a zip as well
            response = client.get(f"/jobs/{job_id}/download", params=params)
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/zip"
            with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
                assert sorted(archive.namelist()) == ["legend.png", "main.png"]
                assert archive.testzip() is None
                assert {n: archive.read(n) for n in archive.namelist()} == single

        with leaves_nothing(api):
            for bad in ("nope.png", "../main.png", f"../../{job_id}/outputs/main.png", "/etc/passwd"):
                response = client.get(f"/jobs/{job_id}/download", params={"file": bad})
                assert response.status_code == 404, bad
                assert "legend.png" in response.json()["detail"] and "main.png" in response.json()["detail"]
            assert client.get("/jobs/run-0000000000000000/download").status_code == 404
    # the zip was built in a temporary file that is gone once sent
    assert not list(api.data_dir.rglob("*.zip"))


def test_the_same_upload_serves_several_runs(api: ApiServer) -> None:
    with api.client() as client:
        up = api.upload(client, "shared.npy", npy_bytes(seed=11))
        body = {"stage": "visualize", "command": "heatmap", "mode": "async"}
        ids = [
            client.post("/cli/run", json={**body, "args": heatmap_args(up["ref"], f"out{i}.png")}).json()["job_id"]
            for i in range(3)
        ]
        jobs = [api.wait_job(client, job_id) for job_id in ids]
        assert [j["status"] for j in jobs] == ["succeeded"] * 3
        assert [j["outputs"][0]["name"] for j in jobs] == ["out0.png", "out1.png", "out2.png"]
        # the upload is still there, once
        assert api.stored_keys(f"uploads/{up['file_id']}/") == [f"uploads/{up['file_id']}/shared.npy"]


def test_idempotency_key_returns_the_same_job(api: ApiServer) -> None:
    with api.client() as client:
        up = api.upload(client, "i.npy", npy_bytes())
        body = {"stage": "visualize", "command": "heatmap", "args": heatmap_args(up["ref"]), "mode": "async"}
        first = client.post("/cli/run", json=body, headers={"Idempotency-Key": "order-42"})
        records_after_first = api.records()
        second = client.post("/cli/run", json=body, headers={"Idempotency-Key": "order-42"})
        assert first.status_code == second.status_code == 202
        assert first.json()["job_id"] == second.json()["job_id"]
        assert {r[0] for r in api.records()} == {r[0] for r in records_after_first}  # no second record

        other = client.post("/cli/run", json=body, headers={"Idempotency-Key": "order-43"}).json()["job_id"]
        assert other != first.json()["job_id"]
        # keys are kept per API key: another client's "order-42" is its own run
        with api.client(key=api.key2) as client2:
            theirs = client2.post("/cli/run", json=body, headers={"Idempotency-Key": "order-42"}).json()["job_id"]
        assert theirs not in (first.json()["job_id"], other)
        # a sync retry with the same key waits for and returns that same run's result
        again = client.post("/cli/run", json={**body, "mode": "sync"}, headers={"Idempotency-Key": "order-42"}).json()
        assert again["job_id"] == first.json()["job_id"] and again["status"] == "success"
        for job_id in (other, theirs):
            api.wait_job(client, job_id)
        ids = [r[0] for r in api.records()]
        assert len(ids) == len(set(ids))
        assert ids.count(first.json()["job_id"]) == 1


def test_an_empty_upload_is_a_file_like_any_other(api: ApiServer) -> None:
    with api.client() as client:
        up = api.upload(client, "empty.txt", b"")
        assert up["size"] == 0
        assert api.stored_keys(f"uploads/{up['file_id']}/") == [f"uploads/{up['file_id']}/empty.txt"]
        result = client.post(
            "/cli/run", json={"stage": "disseminate", "command": "local", "args": {"input": up["ref"], "path": "copy/empty.txt"}}
        ).json()
        assert result["status"] == "success", result
        assert result["outputs"] == [{"name": "copy/empty.txt", "size": 0}]
        copy = client.get(f"/jobs/{result['job_id']}/download", params={"file": "copy/empty.txt"})
        assert copy.status_code == 200 and copy.content == b""
        assert 'filename="empty.txt"' in copy.headers["content-disposition"]
