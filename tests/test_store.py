"""The model store's atomicity: a failed or interrupted write leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from frontend import store as store_module
from frontend.errors import StoreFull, StoreShareFull, StoreUnavailable
from frontend.store import PARTIAL_PREFIX, ModelStore, Quota

MODEL_ID = "ab" * 32


def manifest(model_id: str = MODEL_ID) -> dict:
    return {"id": model_id, "name": "m", "created": 1.0, "bytes": 10}


def test_add_get_list_delete(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    stored, created = store.add(manifest(), b"model bytes", b"a\nb\n")
    assert created
    assert store.add(manifest(), b"other bytes", b"c\n") == (stored, False)  # the first stays
    assert store.get(MODEL_ID).model_bytes() == b"model bytes"
    assert [m.id for m in store.list()] == [stored.id]
    assert store.delete(MODEL_ID) and store.get(MODEL_ID) is None
    assert list(tmp_path.iterdir()) == []


def test_replace_swaps_the_whole_entry(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.add({**manifest(), "name": "poisoned"}, b"model bytes", b"POISONED\n")
    rebuilt = store.replace(manifest(), b"model bytes", b"a\nb\n")
    assert rebuilt.manifest["name"] == "m" and rebuilt.labels_bytes() == b"a\nb\n"
    assert [p.name for p in tmp_path.iterdir()] == [MODEL_ID]


def test_quotas_refuse_what_would_not_fit(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, Quota(models=2, bytes=25))
    store.add(manifest("01" * 32), b"x" * 10, b"a\n")
    with pytest.raises(StoreFull, match="STORE_MAX_BYTES"):
        store.add({**manifest("02" * 32), "bytes": 20}, b"x" * 20, b"a\n")
    store.add({**manifest("03" * 32), "bytes": 10}, b"x" * 10, b"a\n")
    with pytest.raises(StoreFull, match="STORE_MAX_MODELS"):
        store.add({**manifest("04" * 32), "bytes": 1}, b"x", b"a\n")


def test_each_owner_holds_its_share_and_no_more(tmp_path: Path) -> None:
    """One address once filled the whole store with three registrations in 6 s; now it fills
    its own share, and the next client still registers."""
    store = ModelStore(tmp_path, Quota(models=10, bytes=100), Quota(models=3, bytes=40))
    store.add({**manifest("01" * 32), "bytes": 30}, b"x" * 30, b"a\n", owner="203.0.113.9")
    with pytest.raises(StoreShareFull, match="STORE_SHARE_BYTES"):
        store.add({**manifest("02" * 32), "bytes": 20}, b"x" * 20, b"a\n", owner="203.0.113.9")
    store.add({**manifest("03" * 32), "bytes": 20}, b"x" * 20, b"a\n", owner="198.51.100.7")
    for number in (4, 5):
        store.add({**manifest(f"{number:02}" * 32), "bytes": 1}, b"x", b"a\n", owner="198.51.100.7")
    with pytest.raises(StoreShareFull, match="STORE_SHARE_MODELS"):
        store.add({**manifest("06" * 32), "bytes": 1}, b"x", b"a\n", owner="198.51.100.7")
    assert store.get("01" * 32).owner() == "203.0.113.9"
    assert "203.0.113.9" not in str(store.get("01" * 32).manifest)  # never answered
    store.delete("01" * 32)  # its share is free again
    store.add({**manifest("02" * 32), "bytes": 20}, b"x" * 20, b"a\n", owner="203.0.113.9")


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ModelStore(tmp_path)
    real_write = store_module._write_synced

    def disk_full_on_manifest(path: Path, data: bytes) -> None:
        if path.name == store_module.MANIFEST_FILE:
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(store_module, "_write_synced", disk_full_on_manifest)
    with pytest.raises(StoreUnavailable, match="No space left"):
        store.add(manifest(), b"model bytes", b"labels")
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_a_crash_are_invisible_and_cleaned(tmp_path: Path) -> None:
    partial = tmp_path / f"{PARTIAL_PREFIX}crashed"
    partial.mkdir()
    (partial / "model.bin").write_bytes(b"half a model")
    half = tmp_path / ("cd" * 32)  # a model folder without its manifest is not a model
    half.mkdir()
    store = ModelStore(tmp_path)
    assert not partial.exists()
    assert store.list() == [] and store.get("cd" * 32) is None


def test_ids_are_checked_before_touching_the_disk(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    assert store.get("../../etc") is None and not store.delete("../x")
