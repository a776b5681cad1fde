"""The upload page in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers import BIRD_LABELS, BIRD_MODEL, IMAGES, ROOT
from playwright.sync_api import Browser, Page, expect, sync_playwright

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    context = browser.new_context(base_url=base_url)
    opened = context.new_page()
    yield opened
    context.close()


def test_default_model_in_the_browser(page: Page) -> None:
    page.goto("/")
    expect(page.locator("#model-select option:checked")).to_contain_text("1001 classes")
    page.set_input_files("#image-input", str(IMAGES / "grace_hopper.jpg"))
    expect(page.locator("#preview")).to_be_visible()
    page.click("#classify-button")
    first = page.locator("#predictions li .label").first
    expect(first).to_have_text("military uniform", timeout=60_000)
    expect(page.locator("#predictions li")).to_have_count(5)
    expect(page.locator("#summary")).to_contain_text("very high")
    expect(page.locator("#summary")).to_contain_text(" ms")
    answered = page.locator("#answered-by")
    expect(answered).to_contain_text("Answered by mobilenet_v2_1.0_224_quant.tflite (tflite, id ")
    # Every format the API takes can be picked, for a one-off upload and for registering.
    for picker in ("#model-input", "#register-model"):
        accepted = page.locator(picker).get_attribute("accept") or ""
        for suffix in (".tflite", ".pb", ".h5", ".keras", ".zip", ".tar.gz"):
            assert suffix in accepted.split(","), (picker, accepted)
    page.screenshot(path=str(SCREENSHOTS / "grace_hopper.png"), full_page=True)
    # Why this label: the overlay over the photo, on and off.
    explanation = page.locator("#explanation")
    expect(explanation).to_be_hidden()
    page.check("#explain-input")
    expect(explanation).to_be_visible(timeout=60_000)
    expect(page.locator("#explain-status")).to_contain_text("military uniform")
    assert (explanation.get_attribute("src") or "").startswith("data:image/png;base64,")
    photo, overlay = page.locator("#preview").bounding_box(), explanation.bounding_box()
    assert photo and overlay
    assert all(abs(photo[k] - overlay[k]) < 1 for k in ("x", "y", "width", "height"))
    page.screenshot(path=str(SCREENSHOTS / "grace_hopper_why.png"), full_page=True)
    page.uncheck("#explain-input")
    expect(explanation).to_be_hidden()
    # The API's description is linked from the page.
    assert page.locator("#api-docs").get_attribute("href") == "/openapi.json"


# A photo as a browser holds a dropped or pasted file: a File in a DataTransfer.
AS_DATA_TRANSFER = """(b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const files = new DataTransfer();
  files.items.add(new File([bytes], "photo.jpg", { type: "image/jpeg" }));
  return files;
}"""


TIMES, EN_DASH = "\u00d7", "\u2013"  # as the page writes sizes and ranges


def _b64(photo: str) -> str:
    return base64.b64encode((IMAGES / photo).read_bytes()).decode()


def test_a_dropped_or_pasted_photo_is_classified(page: Page) -> None:
    page.goto("/")
    dropped = page.evaluate_handle(AS_DATA_TRANSFER, _b64("hot_dog.jpg"))
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})
    expect(page.locator("#preview")).to_be_visible()
    page.click("#classify-button")
    first = page.locator("#predictions li .label").first
    expect(first).to_have_text("hotdog, hot dog, red hot", timeout=60_000)
    dropped_preview = page.locator("#preview").get_attribute("src") or ""
    page.evaluate(
        "(b64) => document.dispatchEvent(new ClipboardEvent('paste', "
        "{ clipboardData: (" + AS_DATA_TRANSFER + ")(b64), bubbles: true }))",
        _b64("bird.jpg"),
    )
    expect(page.locator("#preview")).not_to_have_attribute("src", dropped_preview)
    page.click("#classify-button")
    expect(first).to_have_text("chickadee", timeout=60_000)


def test_why_for_any_label_and_no_empty_rows(page: Page) -> None:
    page.goto("/")
    page.set_input_files("#image-input", str(IMAGES / "parrot.jpg"))
    page.click("#classify-button")
    rows = page.locator("#predictions li")
    expect(rows.first.locator(".label")).to_have_text("macaw", timeout=60_000)
    # The default model gives the parrot 0.996 and 0.0 to the rest: those rows say nothing.
    expect(rows).to_have_count(1)
    page.set_input_files("#image-input", str(IMAGES / "cat.jpg"))
    page.click("#classify-button")
    expect(rows.first.locator(".label")).to_have_text("Egyptian cat", timeout=60_000)
    expect(rows).to_have_count(5)
    rows.nth(1).locator(".why").click()  # the second label, not the top one
    expect(page.locator("#explanation")).to_be_visible(timeout=60_000)
    expect(page.locator("#explain-status")).to_contain_text("tabby, tabby cat")
    expect(rows.nth(1)).to_have_class("explained")
    rows.nth(0).locator(".why").click()
    expect(page.locator("#explain-status")).to_contain_text("Egyptian cat", timeout=60_000)
    page.screenshot(path=str(SCREENSHOTS / "cat_why_second_label.png"), full_page=True)


def test_uploaded_bird_model_in_the_browser(page: Page) -> None:
    page.goto("/")
    page.click("summary")
    page.set_input_files("#image-input", str(IMAGES / "parrot.jpg"))
    page.set_input_files("#model-input", str(BIRD_MODEL))
    page.set_input_files("#labels-input", str(BIRD_LABELS))
    page.click("#classify-button")
    expect(page.locator("#predictions li .label").first).to_have_text(
        "Ara macao (Scarlet Macaw)", timeout=60_000
    )
    page.screenshot(path=str(SCREENSHOTS / "parrot_bird_model.png"), full_page=True)


def test_error_is_shown_in_the_page(page: Page, tmp_path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    page.goto("/")
    page.set_input_files("#image-input", str(text))
    page.click("#classify-button")
    expect(page.locator("#error")).to_contain_text("invalid_image", timeout=30_000)


def test_form_works_without_javascript(browser: Browser, base_url: str) -> None:
    context = browser.new_context(base_url=base_url, java_script_enabled=False)
    page = context.new_page()
    page.goto("/")
    page.set_input_files("#image-input", str(IMAGES / "hot_dog.jpg"))
    page.click("#classify-button")
    expect(page.locator("#predictions li .label").first).to_have_text("hotdog, hot dog, red hot")
    page.screenshot(path=str(SCREENSHOTS / "no_javascript.png"), full_page=True)
    context.close()


def test_register_in_the_page_then_pick_it_and_delete_it(
    browser: Browser, registry, retrained: Path
) -> None:
    """A Teachable Machine .h5 (converted in a worker: seconds, so the progress shows), listed
    with its format, input, range and classes, picked, used, and deleted."""
    context = browser.new_context(base_url=registry.url)
    page = context.new_page()
    page.goto("/")
    page.click("#register summary")
    page.fill("#register-name", "tm-colours")
    page.set_input_files("#register-model", str(retrained / "teachable_machine.h5"))
    page.set_input_files("#register-labels", str(retrained / "labels.txt"))
    page.click("#register-button")
    status = page.locator("#register-status")
    expect(status).to_contain_text("Checking the model", timeout=30_000)
    expect(status).to_contain_text("tm-colours (", timeout=120_000)
    expect(page.locator("#model-select option:checked")).to_contain_text("keras, 3 classes")
    page.click("#models summary")
    row = page.locator("#model-rows tr", has_text="tm-colours")
    cells = ["tm-colours", "keras", f"160{TIMES}160", "[-1, 1]", "3", "Delete"]
    expect(row.locator("td")).to_have_text(cells)
    default_row = page.locator("#model-rows tr", has_text="mobilenet_v2_1.0_224_quant.tflite")
    expect(default_row.locator("td")).to_have_text(
        ["mobilenet_v2_1.0_224_quant.tflite", "tflite", f"224{TIMES}224",
         f"0{EN_DASH}255 (quantized)", "1001", ""]
    )  # fmt: skip
    page.set_input_files("#image-input", str(retrained / "images" / "sample_0.png"))
    page.click("#classify-button")
    expect(page.locator("#answered-by")).to_contain_text("tm-colours (keras", timeout=60_000)
    page.screenshot(path=str(SCREENSHOTS / "registered_model_list.png"), full_page=True)
    # After a reload the server lists it in the picker; then the admin deletes it.
    page.goto("/")
    expect(page.locator("#model-select")).to_contain_text("tm-colours")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#models summary")
    page.locator("#model-rows tr", has_text="tm-colours").locator(".delete").click()
    expect(page.locator("#models-status")).to_have_text("Deleted tm-colours")
    expect(page.locator("#model-rows tr", has_text="tm-colours")).to_have_count(0)
    assert requests.get(registry.url + "/api/v1/models/tm-colours", timeout=10).status_code == 404
    context.close()


def test_a_name_that_is_taken_is_said_in_the_page(browser: Browser, registry, tmp_path) -> None:
    holder = requests.post(  # bytes of their own: no other test's registration of the model
        registry.url + "/api/v1/models",
        files={"model": BIRD_MODEL.read_bytes() + b"holder", "labels": BIRD_LABELS.read_bytes()},
        data={"name": "page-birds"},
        timeout=120,
    )
    assert holder.status_code == 201, holder.text
    other = tmp_path / "other_birds.tflite"
    other.write_bytes(BIRD_MODEL.read_bytes() + b"other")  # other bytes: another model
    context = browser.new_context(base_url=registry.url)
    page = context.new_page()
    page.goto("/")
    page.click("#register summary")
    page.fill("#register-name", "page-birds")
    page.set_input_files("#register-model", str(other))
    page.set_input_files("#register-labels", str(BIRD_LABELS))
    page.click("#register-button")
    expect(page.locator("#register-status")).to_contain_text("belongs to model", timeout=60_000)
    expect(page.locator("#register-status")).to_contain_text("(model_name_taken)")
    context.close()
