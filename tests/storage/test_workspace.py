"""The workspace: gleaner.toml, finding it, settings precedence, and the backends it prepares."""

from __future__ import annotations

import os
import tomllib
import uuid
from pathlib import Path

import pytest

from storage.catalog import SCHEMA_VERSION, add_label, label_counts
from storage.catalog.migrations import current_version
from storage.errors import GleanerError, WorkspaceNotFound
from storage.settings import CONFIG_NAME, Settings, StoreSettings, load_settings
from storage.stores.local import LocalStore
from storage.stores.s3 import S3Store
from storage.workspace import ENV_WORKSPACE, find_workspace, init_workspace, open_workspace
from tests.support.servers import S3Server

SETTING_VARS = (
    ENV_WORKSPACE,
    "GLEANER_STORE",
    "GLEANER_CATALOG",
    "GLEANER_MIN_SIDE",
    "GLEANER_WORKERS",
    "GLEANER_S3_ADDRESSING_STYLE",
    "AWS_ENDPOINT_URL_S3",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests set the variables they need; none leaks in from the shell that runs them."""
    for name in SETTING_VARS:
        monkeypatch.delenv(name, raising=False)


def write_config(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / CONFIG_NAME
    path.write_text(text, encoding="utf-8")
    return path


# --- init ---------------------------------------------------------------------------------------------------


def test_init_writes_defaults_and_prepares_backends(tmp_path: Path) -> None:
    root = tmp_path / "new" / "ws"
    workspace, created = init_workspace(root)
    with workspace:
        assert created is True
        assert workspace.root == root.resolve()
        document = tomllib.loads((root / CONFIG_NAME).read_text(encoding="utf-8"))
        assert document["store"] == {"url": "store"}
        assert document["catalog"] == {"url": "sqlite:///catalog.db"}
        assert document["ingest"]["min_side"] == 8
        settings = workspace.settings
        assert settings.store.url == "store"
        assert settings.catalog_url == "sqlite:///catalog.db"
        assert settings.ingest.min_side == 8
        assert isinstance(workspace.store, LocalStore)
        assert workspace.store.root == root / "store"
        assert (root / "catalog.db").is_file()  # the catalog was created and migrated at init
        with workspace.catalog.read() as conn:
            assert current_version(conn) == SCHEMA_VERSION


def test_reinit_is_safe(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    first, created = init_workspace(root)
    with first:
        assert created
        with first.catalog.write() as conn:  # some state that a second init must not touch
            add_label(conn, "cat", actor="t")
    config = (root / CONFIG_NAME).read_bytes()

    again, created = init_workspace(root)
    with again:
        assert created is False
        assert (root / CONFIG_NAME).read_bytes() == config
        with again.catalog.read() as conn:
            assert label_counts(conn) == {"cat": 0}
    same, created = init_workspace(root, store_url="store", catalog_url="sqlite:///catalog.db")
    same.close()
    assert created is False
    assert (root / CONFIG_NAME).read_bytes() == config


@pytest.mark.parametrize(
    "conflict", [{"store_url": "elsewhere"}, {"catalog_url": "sqlite:///other.db"}, {"store_url": "s3://b/p"}]
)
def test_reinit_refuses_conflicting_settings(tmp_path: Path, conflict: dict[str, str]) -> None:
    root = tmp_path / "ws"
    init_workspace(root)[0].close()
    config = (root / CONFIG_NAME).read_bytes()
    with pytest.raises(GleanerError, match="already exists with other settings"):
        init_workspace(root, **conflict)
    assert (root / CONFIG_NAME).read_bytes() == config


def test_init_with_custom_urls(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    workspace, _ = init_workspace(root, store_url="objects", catalog_url="sqlite:///db/gleaner.db")
    with workspace:
        assert workspace.settings.store_url == str(root / "objects")
        assert (root / "objects").is_dir()
        assert (root / "db" / "gleaner.db").is_file()


# --- finding the workspace ------------------------------------------------------------------------------


def test_find_explicit_beats_environment_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = tmp_path / "explicit"
    from_env = tmp_path / "from-env"
    here = tmp_path / "here"
    for root in (explicit, from_env, here):
        write_config(root, "")
    monkeypatch.setenv(ENV_WORKSPACE, str(from_env))
    monkeypatch.chdir(here)
    assert find_workspace(explicit) == explicit.resolve()
    assert find_workspace(str(explicit)) == explicit.resolve()
    assert find_workspace() == from_env.resolve()
    monkeypatch.delenv(ENV_WORKSPACE)
    assert find_workspace() == here.resolve()
    assert find_workspace("") == here.resolve()  # an empty option counts as not given


def test_find_relative_explicit_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path / "ws", "")
    monkeypatch.chdir(tmp_path)
    assert find_workspace("ws") == (tmp_path / "ws").resolve()


def test_find_in_cwd_parents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ws"
    write_config(root, "")
    deep = root / "a" / "b" / "c"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_workspace() == root.resolve()
    # A nearer workspace wins over one further up.
    write_config(root / "a", "")
    assert find_workspace() == (root / "a").resolve()


def test_find_explicit_without_config_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path / "here", "")
    monkeypatch.chdir(tmp_path / "here")  # a workspace in cwd does not rescue a wrong explicit path
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkspaceNotFound, match=r"--workspace points to .*empty.*harvest init"):
        find_workspace(tmp_path / "empty")
    monkeypatch.setenv(ENV_WORKSPACE, str(tmp_path / "missing"))
    with pytest.raises(WorkspaceNotFound, match=f"{ENV_WORKSPACE} points to .*missing"):
        find_workspace()


def test_find_nothing_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nowhere = tmp_path / "nowhere" / "deeper"
    nowhere.mkdir(parents=True)
    if any((folder / CONFIG_NAME).is_file() for folder in nowhere.parents):
        pytest.skip(f"a {CONFIG_NAME} above {tmp_path} would be found")
    monkeypatch.chdir(nowhere)
    with pytest.raises(WorkspaceNotFound, match="no Gleaner workspace here") as info:
        find_workspace()
    assert "harvest init" in str(info.value) and ENV_WORKSPACE in str(info.value)
    assert isinstance(info.value, GleanerError)


def test_a_config_folder_is_not_a_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "odd" / CONFIG_NAME).mkdir(parents=True)  # a folder by that name, not a file
    with pytest.raises(WorkspaceNotFound):
        find_workspace(tmp_path / "odd")


def test_open_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ws"
    init_workspace(root)[0].close()
    monkeypatch.chdir(root)
    with open_workspace(overrides={"ingest": {"min_side": 20}}) as workspace:
        assert workspace.root == root.resolve()
        assert workspace.settings.ingest.min_side == 20


# --- settings precedence --------------------------------------------------------------------------------


FILE_CONFIG = """
[store]
url = "from-file"
addressing_style = "virtual"

[catalog]
url = "sqlite:///file.db"

[ingest]
min_side = 16
workers = 3
"""


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    assert settings.store == StoreSettings()
    assert settings.store.url == "store" and settings.store.addressing_style == "auto"
    assert settings.catalog_url == "sqlite:///catalog.db"
    assert settings.ingest.min_side == 8 and settings.ingest.workers == 0


def test_file_beats_defaults(tmp_path: Path) -> None:
    write_config(tmp_path, FILE_CONFIG)
    settings = load_settings(tmp_path)
    assert settings.store.url == "from-file"
    assert settings.store.addressing_style == "virtual"
    assert settings.store.max_pool_connections == 32  # not in the file: the default
    assert settings.catalog_url == "sqlite:///file.db"
    assert (settings.ingest.min_side, settings.ingest.workers) == (16, 3)
    assert settings.ingest.max_bytes == 256 * 1024 * 1024


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    write_config(tmp_path, "[ingest]\nmin_side = 12\n")
    settings = load_settings(tmp_path)
    assert settings.ingest.min_side == 12
    assert settings.store.url == "store"
    assert settings.catalog_url == "sqlite:///catalog.db"


def test_environment_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, FILE_CONFIG)
    monkeypatch.setenv("GLEANER_STORE", "from-env")
    monkeypatch.setenv("GLEANER_CATALOG", "sqlite:///env.db")
    monkeypatch.setenv("GLEANER_MIN_SIDE", "32")
    monkeypatch.setenv("GLEANER_WORKERS", "5")
    monkeypatch.setenv("GLEANER_S3_ADDRESSING_STYLE", "path")
    settings = load_settings(tmp_path)
    assert settings.store.url == "from-env"
    assert settings.catalog_url == "sqlite:///env.db"
    assert settings.ingest.min_side == 32 and isinstance(settings.ingest.min_side, int)
    assert settings.ingest.workers == 5
    assert settings.store.addressing_style == "path"


def test_empty_environment_variable_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, FILE_CONFIG)
    monkeypatch.setenv("GLEANER_STORE", "")
    assert load_settings(tmp_path).store.url == "from-file"


def test_overrides_beat_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, FILE_CONFIG)
    monkeypatch.setenv("GLEANER_STORE", "from-env")
    monkeypatch.setenv("GLEANER_CATALOG", "sqlite:///env.db")
    monkeypatch.setenv("GLEANER_MIN_SIDE", "32")
    overrides = {
        "store": {"url": "from-cli", "endpoint_url": None},
        "catalog": {"url": "sqlite:///cli.db"},
        "ingest": {"min_side": 64, "workers": None},  # None: the option was not given
    }
    settings = load_settings(tmp_path, overrides)
    assert settings.store.url == "from-cli"
    assert settings.store.endpoint_url is None
    assert settings.catalog_url == "sqlite:///cli.db"
    assert settings.ingest.min_side == 64
    assert settings.ingest.workers == 3  # from the file: the None override does not clobber it


def test_endpoint_variable_feeds_store_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, '[store]\nurl = "s3://b/p"\nendpoint_url = "http://file:1"\n')
    assert load_settings(tmp_path).store.endpoint_url == "http://file:1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://env:2")
    settings = load_settings(tmp_path)
    assert settings.store.endpoint_url == "http://env:2"
    assert settings.store.backend_options() == {
        "addressing_style": "auto",
        "max_pool_connections": 32,
        "endpoint_url": "http://env:2",
    }


def test_backend_options_only_for_s3() -> None:
    assert StoreSettings(url="store", endpoint_url="http://x").backend_options() == {}
    options = StoreSettings(url="s3://b", region="eu-west-1", addressing_style="path").backend_options()
    assert options == {"addressing_style": "path", "max_pool_connections": 32, "region": "eu-west-1"}


def test_invalid_toml_is_a_gleaner_error(tmp_path: Path) -> None:
    write_config(tmp_path, "[store\nurl = ")
    with pytest.raises(GleanerError, match="invalid TOML"):
        load_settings(tmp_path)
    (tmp_path / CONFIG_NAME).write_bytes(b"\xff\xfe[store]")
    with pytest.raises(GleanerError, match="invalid TOML"):
        load_settings(tmp_path)


@pytest.mark.parametrize("text, section", [('[store]\nurll = "x"\n', "store"), ("[ingest]\nmin_sides = 3\n", "ingest")])
def test_unknown_keys_are_a_gleaner_error(tmp_path: Path, text: str, section: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(GleanerError, match=rf"unknown key\(s\) in \[{section}\]"):
        load_settings(tmp_path)


@pytest.mark.parametrize("text", ['[catalog]\nuri = "postgresql://db/x"\n', '[catalogue]\nurl = "postgresql://db/x"\n'])
def test_unknown_catalog_keys_and_sections_are_a_gleaner_error(tmp_path: Path, text: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(GleanerError):
        load_settings(tmp_path)


@pytest.mark.parametrize("text", ['store = "s3://b/p"\n', "ingest = 5\n"])
def test_section_that_is_not_a_table_is_a_gleaner_error(tmp_path: Path, text: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(GleanerError):
        load_settings(tmp_path)


@pytest.mark.parametrize("source", ["file", "env"])
def test_non_integer_setting_is_a_gleaner_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    if source == "file":
        write_config(tmp_path, '[ingest]\nmin_side = "big"\n')
    else:
        monkeypatch.setenv("GLEANER_MIN_SIDE", "big")
    with pytest.raises(GleanerError, match="min_side must be a whole number"):
        load_settings(tmp_path)


# --- relative paths -------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_root(tmp_path: Path) -> None:
    root = tmp_path / "ws"

    def settings(store: str, catalog: str) -> Settings:
        return Settings(root=root, store=StoreSettings(url=store), catalog_url=catalog)

    assert settings("store", "sqlite:///catalog.db").store_url == str(root / "store")
    assert settings("a/b", "sqlite:///x.db").store_url == str(root / "a" / "b")
    assert settings("/abs/store", "sqlite:///x.db").store_url == "/abs/store"
    assert settings("s3://bucket/p", "sqlite:///x.db").store_url == "s3://bucket/p"
    assert settings("file:///abs/s", "sqlite:///x.db").store_url == "file:///abs/s"
    assert settings("s", "sqlite:///catalog.db").resolved_catalog_url == f"sqlite:///{root / 'catalog.db'}"
    assert settings("s", "sqlite:///d/c.db").resolved_catalog_url == f"sqlite:///{root / 'd' / 'c.db'}"
    assert settings("s", "sqlite:////abs/c.db").resolved_catalog_url == "sqlite:////abs/c.db"
    assert settings("s", "sqlite:///:memory:").resolved_catalog_url == "sqlite:///:memory:"
    pg = "postgresql://u@127.0.0.1:5432/db"
    assert settings("s", pg).resolved_catalog_url == pg


def test_workspace_paths_do_not_depend_on_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ws"
    write_config(root, '[store]\nurl = "objs"\n[catalog]\nurl = "sqlite:///data/c.db"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with open_workspace(root) as workspace:
        workspace.store.put("k", b"v")
        workspace.catalog  # noqa: B018 - opening creates the database
    assert (root / "objs" / "k").read_bytes() == b"v"
    assert (root / "data" / "c.db").is_file()
    assert list(elsewhere.iterdir()) == []


# --- an S3 workspace ------------------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_workspace_creates_its_bucket(tmp_path: Path, s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    # Credentials from the environment chain; the endpoint only from gleaner.toml.
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    bucket = f"ws-{uuid.uuid4().hex[:12]}"
    root = tmp_path / "ws"
    workspace, created = init_workspace(
        root, store_url=f"s3://{bucket}/p", endpoint_url=s3_env.endpoint_url, addressing_style="path"
    )
    with workspace:
        assert created
        document = tomllib.loads((root / CONFIG_NAME).read_text(encoding="utf-8"))
        assert document["store"] == {
            "url": f"s3://{bucket}/p",
            "endpoint_url": s3_env.endpoint_url,
            "addressing_style": "path",
        }
        client = s3_env.client()
        client.head_bucket(Bucket=bucket)  # raises when the bucket does not exist
        store = workspace.store
        assert isinstance(store, S3Store)
        assert store.url == f"s3://{bucket}/p"
        store.put("images/aa/x.jpg", b"bytes")
        assert client.get_object(Bucket=bucket, Key="p/images/aa/x.jpg")["Body"].read() == b"bytes"
        assert (root / "catalog.db").is_file()  # the catalog stays local
    assert "AWS_ENDPOINT_URL_S3" not in os.environ

    again, created = init_workspace(root, store_url=f"s3://{bucket}/p")  # the bucket exists: fine
    with again:
        assert created is False
        assert again.store.get("images/aa/x.jpg") == b"bytes"
