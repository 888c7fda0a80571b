"""Browser test fixtures: a real `ufo serve` process with API keys, and a real headless Chromium.

Chromium is Debian's (`/usr/bin/chromium`, from `scripts/system_deps.sh`), driven by Playwright's Python
API; Playwright never downloads a browser. The models are the trained demo models in `demo/models` when
that folder is there (the search tests can then expect the right identity first), otherwise a small random
-weight repository exported like the gateway tests' one (the page flows still run; identity checks skip).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.api.auth import create_key
from tests.service.api.conftest import DEMO_MODELS, MODELS, LiveServer, export_random_vit, start_server

CHROMIUM = Path(os.environ.get("UFO_TEST_CHROMIUM", "/usr/bin/chromium"))
# As root the sandbox cannot start; the background-network switches keep Chromium off the (closed) network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TRAINED_REPOSITORY = Path(os.environ.get("UFO_TEST_DEMO_MODELS", DEMO_MODELS))
VIEWPORT = {"width": 1280, "height": 900}


@dataclass(frozen=True)
class Models:
    """The repository the server runs, and whether its models are trained (can tell identities apart)."""

    repository: Path
    trained: bool


@dataclass(frozen=True)
class Keys:
    """API keys as people get them: read only; read and write (enrolling needs the task list); admin."""

    read: str
    write: str
    admin: str
    records: str  # the server's UFO_API_KEYS (a JSON list of records)


@pytest.fixture(scope="session")
def ui_models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    if (TRAINED_REPOSITORY / "ufo_face").is_dir():
        return Models(TRAINED_REPOSITORY, True)
    repository = tmp_path_factory.mktemp("ui") / "repo"
    for seed, (task, name) in enumerate(MODELS.items()):
        export_random_vit(repository, task, name, seed)
    return Models(repository, False)


@pytest.fixture(scope="session")
def keys() -> Keys:
    made = {scope: create_key(scopes) for scope, scopes in
            (("read", ["read"]), ("write", ["read", "write"]), ("admin", ["admin"]))}
    records = json.dumps([record.render() for _, record in made.values()])
    return Keys(made["read"][0], made["write"][0], made["admin"][0], records)


@pytest.fixture(scope="session")
def ui_server(ui_models: Models, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(ui_models.repository, tmp_path_factory.mktemp("ui-server"), api_keys=keys.records)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements.txt)")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: scripts/system_deps.sh installs Debian's `chromium`")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshot_dir(ui_models: Models, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary folder, so a test run never dirties the tree; UFO_UI_SCREENSHOTS=docs/img (with the trained
    demo models) refreshes the screenshots the README shows."""
    chosen = os.environ.get("UFO_UI_SCREENSHOTS")
    return Path(chosen) if chosen else tmp_path_factory.mktemp("ui-screenshots")


def open_context(browser: object, server: LiveServer) -> object:
    """A fresh browser profile (own sessionStorage) on the server."""
    return browser.new_context(base_url=server.url, viewport=VIEWPORT)  # type: ignore[attr-defined]


@pytest.fixture
def page(browser: object, ui_server: LiveServer) -> Iterator[object]:
    """A page in a fresh profile; a script error on it fails the test."""
    context = open_context(browser, ui_server)
    page = context.new_page()
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    yield page
    context.close()
    assert not script_errors, f"script errors on the page: {script_errors}"


@pytest.fixture(scope="session")
def held_out_faces(tiny_demo: Path) -> dict[str, list[Path]]:
    """Held-out ORL identities (never trained on) → their 10 images, in order."""
    folder = tiny_demo / "face" / "test"
    return {p.name: sorted(p.glob("*.pgm")) for p in sorted(folder.iterdir()) if p.is_dir()}


@pytest.fixture(scope="session")
def gallery(browser: object, ui_server: LiveServer, keys: Keys, held_out_faces: dict[str, list[Path]],
            screenshot_dir: Path) -> dict[str, list[str]]:
    """Images 1-5 of every held-out identity, enrolled from the page's Enroll view (metadata: the person);
    images 6-10 stay out as queries. Leaves a screenshot of the Enroll view."""
    from tests.ui.driver import enroll, open_view, screenshot

    context = open_context(browser, ui_server)
    page = context.new_page()
    enrolled: dict[str, list[str]] = {}
    try:
        open_view(page, "enroll", keys.write)
        for person, images in held_out_faces.items():
            line = enroll(page, images[:5], {"person": person})
            assert line.startswith(f"Enrolled 5 images into face: {person}_0001"), line
            enrolled[person] = [image.stem for image in images[:5]]
        screenshot(page, screenshot_dir, "enroll")
    finally:
        context.close()
    return enrolled
