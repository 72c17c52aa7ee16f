"""Storage behaviour, the same on both backends: a local directory and S3 on a real SeaweedFS server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zyrak8s_core import storage as storages
from zyrak8s_core.settings import Settings


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> storages.Storage:
    if request.param == "local":
        return storages.LocalStorage(tmp_path / "root")
    s3 = request.getfixturevalue("s3_server")
    return storages.S3Storage(
        bucket=request.getfixturevalue("s3_bucket"),
        endpoint=s3.endpoint,
        access_key=s3.access_key,
        secret_key=s3.secret_key,
    )


def test_put_and_get_bytes_round_trip(storage: storages.Storage) -> None:
    storage.put_bytes("runs/r1/logs/stdout", b"line one\nline two\n")
    assert storage.get_bytes("runs/r1/logs/stdout") == b"line one\nline two\n"
    storage.put_bytes("runs/r1/logs/stdout", b"replaced")
    assert storage.get_bytes("runs/r1/logs/stdout") == b"replaced"


def test_put_file_get_file_and_stream_in_chunks(storage: storages.Storage, tmp_path: Path) -> None:
    data = os.urandom(9 * 1024 * 1024 + 12345)  # several read chunks; over boto3's 8 MiB multipart threshold
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    storage.put_file("uploads/abc/big.bin", src)

    dest = tmp_path / "copy.bin"
    storage.get_file("uploads/abc/big.bin", dest)
    assert dest.read_bytes() == data

    chunks = list(storage.iter_bytes("uploads/abc/big.bin", chunk_size=storages.CHUNK))
    assert len(chunks) >= 9
    assert b"".join(chunks) == data
    assert [(o.key, o.size) for o in storage.list("uploads/abc/")] == [("uploads/abc/big.bin", len(data))]


def test_empty_object(storage: storages.Storage) -> None:
    storage.put_bytes("runs/r/outputs/empty.txt", b"")
    assert storage.get_bytes("runs/r/outputs/empty.txt") == b""
    assert [(o.key, o.size) for o in storage.list("runs/r/")] == [("runs/r/outputs/empty.txt", 0)]


def test_list_by_prefix_sorted_with_sizes(storage: storages.Storage) -> None:
    storage.put_bytes("runs/r1/outputs/b.png", b"bb")
    storage.put_bytes("runs/r1/outputs/a.png", b"a")
    storage.put_bytes("runs/r1/outputs/sub/c.nc", b"ccc")
    storage.put_bytes("runs/r10/outputs/x.png", b"x")
    storage.put_bytes("uploads/f1/in.npy", b"npy")

    listed = storage.list("runs/r1/")
    assert [(o.key, o.size) for o in listed] == [
        ("runs/r1/outputs/a.png", 1),
        ("runs/r1/outputs/b.png", 2),
        ("runs/r1/outputs/sub/c.nc", 3),
    ]
    # a prefix is a string prefix, as in S3: without the slash, r10 matches too
    assert [o.key for o in storage.list("runs/r1")] == [o.key for o in listed] + ["runs/r10/outputs/x.png"]
    assert [o.key for o in storage.list("uploads/f")] == ["uploads/f1/in.npy"]
    assert [o.key for o in storage.list("uploads/f1/in.npy")] == ["uploads/f1/in.npy"]
    assert storage.list("nothing/here/") == []
    assert len(storage.list("")) == 5


def test_exists(storage: storages.Storage) -> None:
    storage.put_bytes("uploads/f2/a.csv", b"x")
    assert storage.exists("uploads/f2/a.csv")
    assert not storage.exists("uploads/f2/a.cs")
    assert not storage.exists("uploads/f2/b.csv")


def test_delete_prefix_removes_only_that_prefix(storage: storages.Storage) -> None:
    for key in ("runs/a/outputs/1", "runs/a/outputs/2/3", "runs/a/logs/stdout", "runs/ab/outputs/1", "uploads/a/x"):
        storage.put_bytes(key, b"x")
    storage.delete_prefix("runs/a/")
    assert [o.key for o in storage.list("")] == ["runs/ab/outputs/1", "uploads/a/x"]
    with pytest.raises(storages.NotFound):
        storage.get_bytes("runs/a/outputs/1")
    storage.delete_prefix("runs/nothing/")  # deleting nothing is no error


def test_delete_prefix_without_slash_is_a_string_prefix(storage: storages.Storage) -> None:
    for key in ("runs/a/outputs/1", "runs/ab/outputs/1", "runs/b/outputs/1", "uploads/a/x"):
        storage.put_bytes(key, b"x")
    storage.delete_prefix("runs/a")
    assert [o.key for o in storage.list("")] == ["runs/b/outputs/1", "uploads/a/x"]


def test_missing_objects_raise_not_found(storage: storages.Storage, tmp_path: Path) -> None:
    storage.put_bytes("runs/r/outputs/present", b"x")
    with pytest.raises(storages.NotFound):
        storage.get_bytes("runs/r/outputs/absent")
    with pytest.raises(storages.NotFound):
        storage.get_file("runs/r/outputs/absent", tmp_path / "out")
    # raised on the call itself, not later while iterating (the API turns it into a 410/404 up front)
    with pytest.raises(storages.NotFound):
        storage.iter_bytes("runs/r/outputs/absent")
    # a "directory" is not an object
    with pytest.raises(storages.NotFound):
        storage.iter_bytes("runs/r/outputs")
    assert storages.NotFound.__mro__[1] is storages.StorageError


@pytest.mark.parametrize(
    "key",
    ["../escape", "uploads/../../etc/passwd", "/etc/passwd", "runs/r/../../x", "uploads\\x\\y", ""],
)
def test_keys_that_leave_the_store_are_refused(storage: storages.Storage, key: str, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    for call in (
        lambda: storage.put_bytes(key, b"x"),
        lambda: storage.put_file(key, src),
        lambda: storage.get_file(key, tmp_path / "dest"),
        lambda: storage.get_bytes(key),
    ):
        with pytest.raises(storages.StorageError) as info:
            call()
        assert not isinstance(info.value, storages.NotFound)
    assert storage.list("") == []
    assert not (tmp_path.parent / "escape").exists()


def test_check_passes_on_a_usable_store(storage: storages.Storage) -> None:
    storage.check()


def test_local_storage_writes_atomically_and_hides_partials(tmp_path: Path) -> None:
    store = storages.LocalStorage(tmp_path / "root")
    store.put_bytes("runs/r/outputs/a", b"a")
    (tmp_path / "root" / "runs" / "r" / "outputs" / ".b.partial").write_bytes(b"half")
    assert [o.key for o in store.list("runs/r/")] == ["runs/r/outputs/a"]
    # put_bytes left no partial file of its own behind
    assert [p.name for p in (tmp_path / "root").rglob("*.partial")] == [".b.partial"]


def test_local_storage_move_file_takes_the_file(tmp_path: Path) -> None:
    store = storages.LocalStorage(tmp_path / "root")
    src = tmp_path / "upload.tmp"
    src.write_bytes(b"moved")
    store.move_file("uploads/f/x.npy", src)
    assert not src.exists()
    assert store.get_bytes("uploads/f/x.npy") == b"moved"


def test_s3_wrong_secret_is_a_storage_error(s3_server, s3_bucket: str) -> None:
    store = storages.S3Storage(
        bucket=s3_bucket, endpoint=s3_server.endpoint, access_key=s3_server.access_key, secret_key="wrong-secret",
        create_bucket=False,
    )
    with pytest.raises(storages.StorageError) as info:
        store.check()
    assert not isinstance(info.value, storages.NotFound)
    with pytest.raises(storages.StorageError):
        store.put_bytes("uploads/x/y", b"x")
    assert s3_server.keys(s3_bucket) == []


def test_s3_creates_its_bucket(s3_server) -> None:
    import secrets

    bucket = f"zt-new-{secrets.token_hex(4)}"
    store = storages.S3Storage(bucket=bucket, endpoint=s3_server.endpoint, access_key=s3_server.access_key, secret_key=s3_server.secret_key)
    store.put_bytes("uploads/a/b", b"c")
    assert s3_server.keys(bucket) == ["uploads/a/b"]


def test_from_settings_picks_the_backend(tmp_path: Path, s3_server, s3_bucket: str) -> None:
    local = storages.from_settings(Settings(data_dir=tmp_path))
    assert isinstance(local, storages.LocalStorage)
    assert local.root == (tmp_path / "storage").resolve()

    remote = storages.from_settings(
        Settings(
            data_dir=tmp_path, s3_endpoint=s3_server.endpoint, s3_bucket=s3_bucket,
            s3_access_key=s3_server.access_key, s3_secret_key=s3_server.secret_key,
        )
    )
    assert isinstance(remote, storages.S3Storage)
    remote.put_bytes("runs/x/logs/stdout", b"hi")
    assert s3_server.keys(s3_bucket) == ["runs/x/logs/stdout"]


def test_settings_refuse_an_s3_endpoint_without_credentials(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ZYRA_S3_ACCESS_KEY"):
        Settings(data_dir=tmp_path, s3_endpoint="http://127.0.0.1:1", s3_bucket="b")


def test_layout_helpers() -> None:
    assert storages.upload_key("f" * 32, "a.npy") == f"uploads/{'f' * 32}/a.npy"
    assert storages.output_prefix("run-1") == "runs/run-1/outputs/"
    assert storages.log_key("run-1", "stderr") == "runs/run-1/logs/stderr"
