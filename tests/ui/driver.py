"""Driving the page as a person would: open a view, give a key, pick files, press buttons, read the screen.

Each helper waits for what the person would wait for (a result line, a list of hits, an error message), so
the tests read as the steps of a visit.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

TIMEOUT_MS = 30_000


def open_view(page: Page, view: str, key: str | None = None, task: str = "face") -> None:
    """Load /ui at `view`; with `key`, enter it, wait for the task list and pick `task`."""
    page.goto(f"/ui#{view}")
    if key is not None:
        use_key(page, key)
        page.select_option("#task", task)


def use_key(page: Page, key: str) -> None:
    page.fill("#api-key", key)
    page.click("text=Use key")
    expect(page.locator("#task option").first).to_be_attached(timeout=TIMEOUT_MS)
    expect(page.locator("#global-error")).to_be_hidden()


def wait_until(page: Page, condition: str) -> None:
    """Wait until the JS `condition` holds (`byId` is document.getElementById)."""
    page.wait_for_function(f"() => {{ const byId = (id) => document.getElementById(id); return {condition}; }}",
                           timeout=TIMEOUT_MS)


def go(page: Page, view: str) -> None:
    page.click(f"nav a[data-view={view}]")
    expect(page.locator(f"#view-{view}")).to_be_visible()


def enroll(page: Page, files: list[Path | dict], metadata: dict[str, Any], prefix: str = "") -> str:
    """Enroll `files` from the Enroll view; returns the result line."""
    page.fill("#enroll-prefix", prefix)
    page.set_input_files("#enroll-files", files)
    page.fill("#enroll-metadata", json.dumps(metadata))
    page.click("#enroll-form button[type=submit]")
    wait_until(page, "!byId('enroll-error').hidden || "
                     "/^Enrolled \\d+ images? into /.test(byId('enroll-result').textContent)")
    assert page.locator("#enroll-error").is_hidden(), page.inner_text("#enroll-error")
    return page.inner_text("#enroll-result")


def search(page: Page, query: Path | dict, k: int = 5, filter: dict | None = None) -> list[dict[str, Any]]:
    """Search from the Search view; returns the hits as shown: id, score, metadata, above the threshold."""
    page.set_input_files("#search-file", query)
    page.fill("#search-k", str(k))
    page.fill("#search-filter", json.dumps(filter) if filter else "")
    page.evaluate("document.getElementById('search-summary').textContent = ''")
    page.click("#search-form button[type=submit]")
    wait_until(page, "byId('search-summary').textContent !== '' || !byId('search-error').hidden")
    assert page.locator("#search-error").is_hidden(), page.locator("#search-error").inner_text()
    return shown_hits(page)


def shown_hits(page: Page) -> list[dict[str, Any]]:
    return page.eval_on_selector_all("#search-hits li.hit", """cards => cards.map(card => ({
        id: card.querySelector('.hit-id').textContent,
        score: Number(card.querySelector('.score').textContent.replace('score ', '')),
        metadata: Object.fromEntries([...card.querySelectorAll('.meta dt')].map(
            dt => [dt.textContent, dt.nextElementSibling.textContent])),
        match: card.classList.contains('match'),
    }))""")


def wait_for_thumbnails(page: Page) -> None:
    """Every result's thumbnail decoded (or replaced by a placeholder note)."""
    page.wait_for_function("""() => [...document.querySelectorAll('#search-hits img.thumb')].every(
        img => img.complete && img.naturalWidth > 0)""", timeout=TIMEOUT_MS)


def drop_file(page: Page, zone: str, name: str, data: bytes) -> None:
    """Drop a file on a drop zone, as dragging it from the desktop does."""
    page.evaluate("""([selector, name, b64]) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name));
        const zone = document.querySelector(selector);
        zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: transfer, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", [zone, name, base64.b64encode(data).decode()])


def verify(page: Page) -> tuple[str, str]:
    """Press Verify (both images chosen); returns (decision, numbers line)."""
    page.evaluate("document.getElementById('verify-result').hidden = true")
    page.click("#verify-form button[type=submit]")
    wait_until(page, "!byId('verify-result').hidden || !byId('verify-error').hidden")
    assert page.locator("#verify-error").is_hidden(), page.locator("#verify-error").inner_text()
    return page.inner_text("#verify-decision"), page.inner_text("#verify-numbers")


def screenshot(page: Page, folder: Path, view: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ui_{view}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
