"""The object store contract, run on the local folder store and on S3 (a real SeaweedFS server)."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

import pytest

from storage.errors import GleanerError, StoreError
from storage.keys import IMAGE_PREFIX, image_key, sha256_from_key
from storage.stores import ObjectStore, open_store, store_schemes
from storage.stores.local import LocalStore
from storage.stores.s3 import S3Store, ensure_bucket
from tests.support.servers import S3Server

SHA = hashlib.sha256(b"gleaner").hexdigest()
PAYLOAD = bytes(range(256)) * 3 + b"\x00\xff tail"


def _s3_options(server: S3Server) -> dict[str, str]:
    return {"endpoint_url": server.endpoint_url, "addressing_style": "path"}


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A fresh, empty store: a local folder, or a prefix in a fresh bucket (credentials from the env chain)."""
    if request.param == "local":
        return open_store(str(tmp_path / "objects"))
    server: S3Server = request.getfixturevalue("s3_env")
    bucket: str = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket}/prefix", _s3_options(server))


# --- the contract, on both backends ---------------------------------------------------------------


def test_store_implements_protocol(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)
    assert store.url


def test_put_get_roundtrip(store: ObjectStore) -> None:
    key = image_key(SHA, "jpg")
    store.put(key, PAYLOAD, content_type="image/jpeg")
    assert store.get(key) == PAYLOAD
    store.put("top-level", b"")
    assert store.get("top-level") == b""


def test_put_same_key_twice_is_harmless(store: ObjectStore) -> None:
    store.put("a/b.bin", b"same bytes")
    store.put("a/b.bin", b"same bytes")
    assert store.get("a/b.bin") == b"same bytes"
    assert sorted(store.iter()) == ["a/b.bin"]


def test_get_missing_raises_key_error(store: ObjectStore) -> None:
    with pytest.raises(KeyError):
        store.get("images/00/missing.jpg")
    store.put("images/00/present.jpg", b"x")
    with pytest.raises(KeyError):
        store.get("images/00/absent.jpg")


def test_exists(store: ObjectStore) -> None:
    assert not store.exists("x/y.bin")
    store.put("x/y.bin", b"1")
    assert store.exists("x/y.bin")
    assert not store.exists("x/y.bi")  # no prefix matching
    assert not store.exists("x/y.bin.more")
    store.put("x/empty.bin", b"")  # what a power cut can leave of an unsynced write: not taken for the object
    assert not store.exists("x/empty.bin")
    assert store.exists("x/y.bin", size=1)
    assert not store.exists("x/y.bin", size=2)  # a short leftover is not the object either


def test_batch_writes_then_one_sync(store: ObjectStore) -> None:
    keys = [image_key(f"{n:064x}", "jpg") for n in range(5)]
    for n, key in enumerate(keys):
        store.put(key, PAYLOAD + bytes([n]), "image/jpeg", durable=False)
    assert all(store.exists(key) for key in keys)  # complete for every reader before the sync
    store.sync()
    assert [store.get(key) for key in keys] == [PAYLOAD + bytes([n]) for n in range(5)]


def test_iter_empty_store(store: ObjectStore) -> None:
    assert list(store.iter()) == []
    assert list(store.iter("images/")) == []


def test_iter_with_prefix(store: ObjectStore) -> None:
    keys = ["images/aa/one.jpg", "images/aa/two.png", "images/bb/three.jpg", "manifests/s1.json", "top"]
    for key in keys:
        store.put(key, key.encode())
    assert sorted(store.iter()) == sorted(keys)
    assert sorted(store.iter("images/")) == keys[:3]
    assert sorted(store.iter("images/aa/")) == keys[:2]
    assert sorted(store.iter("images/a")) == keys[:2]
    assert list(store.iter("manifests/")) == ["manifests/s1.json"]
    assert list(store.iter("nothing/")) == []
    # Every listed key is relative to the store and readable as such.
    for key in store.iter():
        assert store.get(key) == key.encode()


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.put("d/gone.bin", b"bye")
    store.put("d/kept.bin", b"stay")
    store.delete("d/gone.bin")
    assert not store.exists("d/gone.bin")
    with pytest.raises(KeyError):
        store.get("d/gone.bin")
    store.delete("d/gone.bin")  # again: not an error
    store.delete("never/was.bin")
    assert list(store.iter()) == ["d/kept.bin"]


def test_url_for_names_the_object(store: ObjectStore) -> None:
    key = image_key(SHA, "png")
    store.put(key, PAYLOAD)
    url = store.url_for(key)
    if isinstance(store, LocalStore):
        assert url.startswith("file://")
        assert url == (store.root / key).as_uri()
        with urllib.request.urlopen(url) as response:
            assert response.read() == PAYLOAD
    else:
        assert isinstance(store, S3Store)
        assert url == f"s3://{store.bucket}/prefix/{key}"
        assert url.startswith(store.url + "/")


# --- the local folder store ----------------------------------------------------------------------------


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


def test_local_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "objects"))
    assert isinstance(store, LocalStore)
    for n in range(20):
        store.put(f"images/{n % 3:02d}/{n}.bin", os.urandom(1000))
    store.put("images/00/0.bin", b"replaced")
    assert _temp_files(store.root) == []
    assert store.get("images/00/0.bin") == b"replaced"


def test_local_batch_write_skips_fsync_until_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(str(tmp_path / "objects"))
    assert isinstance(store, LocalStore)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    store.put("images/aa/batch.bin", b"batch", durable=False)
    assert synced == []  # group commit: no fsync per object...
    store.put("images/aa/single.bin", b"single")
    assert len(synced) == 2  # ...while a plain put fsyncs the file and its folder
    store.sync()
    assert store.get("images/aa/batch.bin") == b"batch"


def test_local_failed_write_cleans_up_temp_file(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "objects"))
    assert isinstance(store, LocalStore)
    store.put("dir/child.bin", b"x")
    with pytest.raises(OSError):
        store.put("dir", b"a directory is in the way")  # the final rename fails
    assert _temp_files(store.root) == []
    assert sorted(store.iter()) == ["dir/child.bin"]


def test_local_leftover_temp_file_is_not_listed(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "objects"))
    assert isinstance(store, LocalStore)
    store.put("images/aa/real.jpg", b"real")
    (store.root / "images" / "aa" / ".tmp-abc123").write_bytes(b"interrupted write")
    (store.root / ".tmp-top").write_bytes(b"interrupted write")
    assert list(store.iter()) == ["images/aa/real.jpg"]
    assert list(store.iter("images/aa/")) == ["images/aa/real.jpg"]


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "", "a/", "./a", "a/./b", "a/../../b", ".."])
def test_local_invalid_keys_raise_value_error(tmp_path: Path, key: str) -> None:
    store = open_store(str(tmp_path / "objects"))
    with pytest.raises(ValueError):
        store.put(key, b"x")
    with pytest.raises(ValueError):
        store.get(key)
    with pytest.raises(ValueError):
        store.exists(key)
    with pytest.raises(ValueError):
        store.delete(key)
    with pytest.raises(ValueError):
        store.url_for(key)
    assert not (tmp_path / "x").exists()
    assert list(store.iter()) == []


def test_local_store_from_file_url(tmp_path: Path) -> None:
    root = tmp_path / "with space"
    first = open_store(str(root))
    first.put("k/v", b"data")
    second = open_store(root.as_uri())
    assert isinstance(second, LocalStore)
    assert second.root == root.resolve()
    assert second.get("k/v") == b"data"


def test_local_store_creates_its_folder(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "c"
    store = open_store(str(root))
    assert root.is_dir()
    assert store.url == str(root.resolve())


# --- the S3 store --------------------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_object_is_readable_with_plain_boto3(s3_env: S3Server, s3_bucket: str) -> None:
    store = open_store(f"s3://{s3_bucket}/some/prefix/", _s3_options(s3_env))
    key = image_key(SHA, "jpg")
    store.put(key, PAYLOAD, content_type="image/jpeg")
    client = s3_env.client()
    response = client.get_object(Bucket=s3_bucket, Key=f"some/prefix/{key}")
    assert response["Body"].read() == PAYLOAD
    assert response["ContentType"] == "image/jpeg"
    assert store.url == f"s3://{s3_bucket}/some/prefix"


@pytest.mark.s3
def test_s3_iter_stays_inside_the_prefix(s3_env: S3Server, s3_bucket: str) -> None:
    client = s3_env.client()
    client.put_object(Bucket=s3_bucket, Key="elsewhere/a", Body=b"x")
    client.put_object(Bucket=s3_bucket, Key="prefix2/a", Body=b"x")  # shares the prefix as a string
    client.put_object(Bucket=s3_bucket, Key="prefix/inside", Body=b"x")
    store = open_store(f"s3://{s3_bucket}/prefix", _s3_options(s3_env))
    assert list(store.iter()) == ["inside"]
    assert store.exists("inside")
    assert not store.exists("a")


@pytest.mark.s3
def test_s3_store_without_prefix(s3_env: S3Server, s3_bucket: str) -> None:
    store = open_store(f"s3://{s3_bucket}", _s3_options(s3_env))
    store.put("images/aa/x.jpg", b"x")
    assert store.url == f"s3://{s3_bucket}"
    assert store.url_for("images/aa/x.jpg") == f"s3://{s3_bucket}/images/aa/x.jpg"
    assert s3_env.client().get_object(Bucket=s3_bucket, Key="images/aa/x.jpg")["Body"].read() == b"x"
    assert list(store.iter("images/")) == ["images/aa/x.jpg"]


@pytest.mark.s3
def test_s3_endpoint_from_environment(s3_env: S3Server, s3_bucket: str) -> None:
    assert os.environ["AWS_ENDPOINT_URL_S3"] == s3_env.endpoint_url
    store = open_store(f"s3://{s3_bucket}/env", {"addressing_style": "path"})
    store.put("k", b"via the environment")
    assert store.get("k") == b"via the environment"
    body = s3_env.client().get_object(Bucket=s3_bucket, Key="env/k")["Body"].read()
    assert body == b"via the environment"


@pytest.mark.s3
def test_s3_presigned_url_serves_the_object(s3_env: S3Server, s3_bucket: str) -> None:
    store = open_store(f"s3://{s3_bucket}/p", _s3_options(s3_env))
    assert isinstance(store, S3Store)
    store.put("images/aa/x.png", PAYLOAD, content_type="image/png")
    url = store.presigned_url("images/aa/x.png", expires_s=600)
    assert url.startswith(s3_env.endpoint_url)
    with urllib.request.urlopen(url) as response:
        assert response.read() == PAYLOAD


@pytest.mark.s3
def test_s3_ensure_bucket(s3_env: S3Server) -> None:
    import uuid

    bucket = f"eb-{uuid.uuid4().hex[:12]}"
    store = open_store(f"s3://{bucket}/p", _s3_options(s3_env))
    assert isinstance(store, S3Store)
    assert ensure_bucket(store) is True
    assert ensure_bucket(store) is False
    store.put("k", b"v")
    assert store.get("k") == b"v"


@pytest.mark.s3
def test_s3_bad_urls_and_options(s3_env: S3Server) -> None:
    with pytest.raises(StoreError, match="unknown S3 store options"):
        open_store("s3://bucket/p", {"endpoint": s3_env.endpoint_url})
    with pytest.raises(StoreError, match="needs a bucket"):
        open_store("s3:///only-a-prefix", _s3_options(s3_env))


# --- choosing a backend by URL ---------------------------------------------------------------------------


def test_unknown_scheme_is_a_gleaner_error() -> None:
    with pytest.raises(GleanerError, match="unknown store URL scheme 'ftp'"):
        open_store("ftp://host/path")
    assert {"file", "s3"} <= set(store_schemes())


# --- content-addressed keys -------------------------------------------------------------------------------


def test_image_key_layout_and_round_trip() -> None:
    key = image_key(SHA, "JPG")
    assert key == f"{IMAGE_PREFIX}{SHA[:2]}/{SHA}.jpg"
    assert sha256_from_key(key) == SHA
    for ext in ("png", "webp", "gif", "jpeg"):
        assert sha256_from_key(image_key(SHA, ext)) == SHA


@pytest.mark.parametrize("digest", ["", "abc", SHA[:-1], SHA + "0", SHA.upper(), "g" * 64, f" {SHA[1:]}"])
def test_image_key_rejects_malformed_digests(digest: str) -> None:
    with pytest.raises(ValueError):
        image_key(digest, "jpg")


@pytest.mark.parametrize(
    "key",
    [
        f"images/{SHA[:2]}/{SHA}",  # no extension
        f"images/{SHA[:2]}/{SHA}.",  # empty extension
        f"images/zz/{SHA}.jpg",  # the fan-out folder does not match the digest
        f"images/{SHA}.jpg",  # no fan-out folder
        f"images/{SHA[:2]}/{SHA[:-1]}.jpg",  # short digest
        f"images/{SHA[:2].upper()}/{SHA.upper()}.jpg",  # upper case
        f"other/{SHA[:2]}/{SHA}.jpg",  # foreign prefix
        f"x/images/{SHA[:2]}/{SHA}.jpg",
        f"images/{SHA[:2]}/{SHA}.jpg/extra",
        f"images/{SHA[:2]}/{SHA}.JPG",
        "manifests/snapshot.json",
        "",
    ],
)
def test_sha256_from_key_rejects_malformed_keys(key: str) -> None:
    assert sha256_from_key(key) is None


def test_sha256_from_key_rejects_trailing_newline() -> None:
    assert sha256_from_key(image_key(SHA, "jpg") + "\n") is None
