"""The catalog: one lookup of a stored model by its id or its name, wherever a model is named
(the API, the page, the CLI, /v2, /v1/models), the rules of names, and stored models kept ready
to send (bytes and labels in memory) for the requests that follow.

A name is 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit; it is not
64 hex digits (an id) nor `default` (the default model's other name). Names are unique: a name
is taken under the store's lock (frontend/store.py), so two registrations asking for the same
one in two gunicorn processes cannot both get it. A name derived from an upload's file name
(no `name` given) is made free by a suffix: `keras_model.h5`, `keras_model-2.h5`.

Stores written before names were unique may hold several models of one name: asking for it
then answers 409 with their ids."""

from __future__ import annotations

import re
import threading
from pathlib import PurePath

from frontend.dataplane.manifest import Manifest
from frontend.dataplane.models import ModelSource, from_manifest
from frontend.errors import InvalidField, ModelNameAmbiguous, ModelNameTaken, ModelNotFound
from frontend.labels import parse_labels
from frontend.store import ModelStore, StoredModel, is_model_id
from protocol.lru import LRU

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_ALIAS = "default"
READY_MODELS = 8  # stored models kept in memory, ready to send


def check_name(name: str) -> str:
    if not NAME.fullmatch(name) or is_model_id(name) or name == DEFAULT_ALIAS:
        raise InvalidField(
            f"name {name!r} is not a model name: 1 to 64 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit, not 64 hex digits (an id) and not "
            f"{DEFAULT_ALIAS!r}"
        )
    return name


def name_from_filename(filename: str) -> str:
    """A valid name made of a file's name: other characters become `-`."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", PurePath(filename or "model").name)
    cleaned = cleaned.lstrip("._-")[:64] or "model"
    return cleaned if not is_model_id(cleaned) and cleaned != DEFAULT_ALIAS else f"model-{cleaned}"


class Catalog:
    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._ids_by_name: dict[str, list[str]] = {}
        self._ready: LRU[str, ModelSource] = LRU(max_items=READY_MODELS)

    def source(self, stored: StoredModel, origin: str) -> ModelSource:
        """The stored model ready to send: its bytes, labels and manifest, read once."""
        ready = self._ready.get(stored.id)
        if ready is not None and ready.origin == origin:
            return ready
        labels = tuple(parse_labels(stored.labels_bytes()))
        manifest = Manifest.from_dict(stored.manifest)
        ready = from_manifest(manifest, stored.model_bytes(), labels, origin)
        self._ready.put(stored.id, ready)
        return ready

    def forget(self, model_id: str) -> None:
        self._ready.pop(model_id)

    def _by_name(self) -> dict[str, list[str]]:
        """Ids by name, read again whenever the store changed (in any process)."""
        generation = self.store.generation()
        with self._lock:
            if generation != self._generation:
                index: dict[str, list[str]] = {}
                for stored in self.store.list():
                    index.setdefault(stored.manifest.get("name", ""), []).append(stored.id)
                self._ids_by_name, self._generation = index, generation
            return self._ids_by_name

    def holders(self, name: str) -> list[str]:
        return list(self._by_name().get(name, ()))

    def find(self, key: str) -> StoredModel:
        """The stored model whose id or name is `key`."""
        stored = self.store.get(key)
        if stored is not None:
            return stored
        ids = self.holders(key)
        if len(ids) > 1:
            raise ModelNameAmbiguous(
                f"{len(ids)} models are named {key!r} (registered before names were unique): "
                f"use an id, one of {', '.join(ids)}, or rename them"
            )
        stored = self.store.get(ids[0]) if ids else None
        if stored is None:
            raise ModelNotFound(f"no model with id or name {key!r}; GET /api/v1/models lists them")
        return stored

    def check_free(self, name: str, model_id: str) -> None:
        """ModelNameTaken when a model other than `model_id` holds `name`."""
        others = [held for held in self.holders(name) if held != model_id]
        if others:
            raise ModelNameTaken(
                f"the name {name!r} belongs to model {others[0]}: choose another name, or "
                "rename or delete that model first"
            )

    def free_name(self, wanted: str, model_id: str) -> str:
        """`wanted`, or with the first suffix that no other model holds (`a-2.h5`)."""
        path = PurePath(wanted)
        stem, suffix = (path.stem, path.suffix) if path.suffix else (wanted, "")
        candidate, number = wanted, 1
        while any(held != model_id for held in self.holders(candidate)):
            number += 1
            candidate = f"{stem[: 63 - len(suffix) - len(str(number))]}-{number}{suffix}"
        return candidate

    def rename(self, key: str, name: str) -> tuple[StoredModel, str]:
        """The model renamed, and its old name."""
        check_name(name)
        with self.store.locked():
            stored = self.find(key)
            self.check_free(name, stored.id)
            old = stored.manifest.get("name", "")
            if old == name:
                return stored, old
            renamed = self.store.rewrite_manifest(stored.id, {**stored.manifest, "name": name})
        self.forget(stored.id)
        return renamed, old
