"""Where files live: the cache for converted models, a private runtime folder for the queue."""

import os
import stat
import tempfile

import pytest

from lib.core import paths
from lib.core.errors import ExplorerError


def _private(path):
    info = os.lstat(path)
    return stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700 \
        and info.st_uid == os.geteuid()


def test_runtime_folder_is_the_override_when_set(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.RUNTIME_ENV, str(tmp_path / "run"))
    assert paths.runtime_dir() == tmp_path / "run" and _private(tmp_path / "run")


def test_runtime_folder_is_in_the_sessions_runtime_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.RUNTIME_ENV, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert paths.runtime_dir() == tmp_path / "inference-latency-explorer"
    assert _private(paths.runtime_dir())


def test_runtime_folder_falls_back_to_a_private_temporary_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.RUNTIME_ENV, raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder = tmp_path / f"inference-latency-explorer-{os.getuid()}"
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)                      # made by us, too open: tightened
    assert paths.runtime_dir() == folder and _private(folder)


def test_a_runtime_folder_someone_else_planted_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.RUNTIME_ENV, raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / f"inference-latency-explorer-{os.getuid()}").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ExplorerError, match="not a private folder.*ILE_RUNTIME_DIR"):
        paths.runtime_dir()


def test_a_runtime_folder_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("only root can give a folder to another user")
    monkeypatch.setenv(paths.RUNTIME_ENV, str(tmp_path / "run"))
    (tmp_path / "run").mkdir(mode=0o700)
    os.chown(tmp_path / "run", 65534, 65534)
    with pytest.raises(ExplorerError, match="belongs to another user"):
        paths.runtime_dir()
