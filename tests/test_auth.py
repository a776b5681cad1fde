"""Optional bearer tokens: ADMIN_TOKEN for registering and deleting, API_TOKEN for classifying
and reading the registry; open when unset."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from helpers import BIRD_LABELS, BIRD_MODEL, IMAGES, Server, start_gunicorn

CAT = (IMAGES / "cat.jpg").read_bytes()
ADMIN, API = "admin-7f3a", "api-91c2"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"ADMIN_TOKEN": ADMIN, "API_TOKEN": API, "POOL_SIZE": "1"}
    server = start_gunicorn(tmp_path_factory.mktemp("auth"), env)
    yield server
    server.stop()


def register(url: str, headers: dict[str, str]) -> requests.Response:
    files = {"model": BIRD_MODEL.read_bytes(), "labels": BIRD_LABELS.read_bytes()}
    return requests.post(url + "/api/v1/models", files=files, headers=headers, timeout=120)


def classify(url: str, headers: dict[str, str], path: str = "/api/v1/classify"):
    return requests.post(url + path, files={"image": CAT}, headers=headers, timeout=60)


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("wrong"), bearer(API), {"Authorization": ADMIN}, {"Authorization": "Basic x"}],
    ids=["none", "wrong", "api-token", "no-scheme", "basic"],
)
def test_registering_needs_the_admin_token(guarded: Server, headers: dict) -> None:
    answer = register(guarded.url, headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_admin_registers_and_deletes_api_classifies(guarded: Server) -> None:
    registered = register(guarded.url, bearer(ADMIN))
    assert registered.status_code == 201, registered.text
    model_id = registered.json()["id"]
    path = f"/api/v1/models/{model_id}/classify"
    parrot = (IMAGES / "parrot.jpg").read_bytes()
    for token in (API, ADMIN):
        answer = requests.post(
            guarded.url + path, files={"image": parrot}, headers=bearer(token), timeout=60
        )
        assert answer.status_code == 200, answer.text
    assert classify(guarded.url, {}, path).status_code == 401
    delete_url = f"{guarded.url}/api/v1/models/{model_id}"
    assert requests.delete(delete_url, headers=bearer(API), timeout=10).status_code == 401
    assert requests.delete(delete_url, timeout=10).status_code == 401
    assert requests.delete(delete_url, headers=bearer(ADMIN), timeout=10).status_code == 200


def test_classification_needs_the_api_token(guarded: Server) -> None:
    assert classify(guarded.url, {}).status_code == 401
    assert classify(guarded.url, bearer("api-91c3")).status_code == 401
    answer = classify(guarded.url, bearer(API))
    assert answer.json()["predictions"][0]["label"] == "Egyptian cat"
    infer = requests.post(guarded.url + "/infer", files={"image_file": CAT}, timeout=60)
    assert infer.status_code == 401
    listed = requests.get(guarded.url + "/api/v1/models", timeout=10)
    assert listed.status_code == 401
    # health stays open for load balancers and orchestrators
    assert requests.get(guarded.url + "/healthz", timeout=10).status_code == 200


def test_open_when_no_token_is_set(server: Server) -> None:
    assert classify(server.url, {}).status_code == 200
