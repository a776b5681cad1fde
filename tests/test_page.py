"""The upload page in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import BIRD_LABELS, BIRD_MODEL, IMAGES, ROOT
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


def test_register_in_the_page_then_pick_it(browser: Browser, registry, tmp_path) -> None:
    model = tmp_path / "page_birds.tflite"
    model.write_bytes(BIRD_MODEL.read_bytes() + b"page")  # bytes of its own: a new id
    context = browser.new_context(base_url=registry.url)
    page = context.new_page()
    page.goto("/")
    page.click("#register summary")
    page.fill("#register-name", "birds from the page")
    page.set_input_files("#register-model", str(model))
    page.set_input_files("#register-labels", str(BIRD_LABELS))
    page.click("#register-button")
    expect(page.locator("#register-status")).to_contain_text(
        "Registered birds from the page", timeout=60_000
    )
    expect(page.locator("#model-select option:checked")).to_contain_text("965 classes")
    page.set_input_files("#image-input", str(IMAGES / "bird.jpg"))
    page.click("#classify-button")
    expect(page.locator("#predictions li .label").first).to_have_text(
        "Poecile atricapillus (Black-capped Chickadee)", timeout=60_000
    )
    page.screenshot(path=str(SCREENSHOTS / "registered_model_picker.png"), full_page=True)
    # After a reload the server lists it in the picker.
    page.goto("/")
    expect(page.locator("#model-select")).to_contain_text("birds from the page")
    context.close()
