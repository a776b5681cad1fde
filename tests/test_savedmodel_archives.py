"""SavedModel archives are unpacked only when every member is a plain file or folder with a
safe relative name: no absolute paths, no `..`, no links."""

from __future__ import annotations

import io
import tarfile
from pathlib import PurePosixPath

import pytest
from helpers import zip_of

from protocol import InvalidModel, detect_format
from worker.runtimes.savedmodel import unpack


def tar_of(*members: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in members:
            archive.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buffer.getvalue()


def test_a_good_zip_unpacks_to_its_saved_model_folder() -> None:
    archive = zip_of({"export/saved_model.pb": b"x", "export/variables/v.index": b"y"})
    assert detect_format(archive) == "savedmodel"
    members, folder = unpack(archive)
    assert folder == PurePosixPath("export")
    assert members == {
        PurePosixPath("export/saved_model.pb"): b"x",
        PurePosixPath("export/variables/v.index"): b"y",
    }


@pytest.mark.parametrize("name", ["../escape/saved_model.pb", "/abs/saved_model.pb"])
def test_zip_member_outside_the_folder_is_refused(name: str) -> None:
    with pytest.raises(InvalidModel, match="unsafe member"):
        unpack(zip_of({name: b"x"}))


def test_tar_link_is_refused() -> None:
    link = tarfile.TarInfo("export/saved_model.pb")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(InvalidModel, match="not a file"):
        unpack(tar_of(link))


def test_archive_without_saved_model_and_broken_archives() -> None:
    with pytest.raises(InvalidModel, match=r"no saved_model\.pb"):
        unpack(zip_of({"readme.txt": b"hi"}))
    with pytest.raises(InvalidModel, match=r"tar\.gz"):
        unpack(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(InvalidModel, match="zip"):
        unpack(b"PK\x03\x04" + b"garbage" * 10)
