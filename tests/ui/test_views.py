"""Each view of the page, driven in headless Chromium against a real server: search the gallery enrolled
from the page, see thumbnails, scores, metadata and the threshold line; delete; verify; status and rebuild;
and errors shown in words. Screenshots of the views are written on the way (`docs/img/ui_<view>.png` with
the trained demo models)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.service.api.conftest import LiveServer

from .conftest import Keys, Models
from .driver import drop_file, enroll, go, open_view, screenshot, search, verify, wait_for_thumbnails

NOT_TEXT_IMAGE = {"name": "holiday.jpg", "mimeType": "image/jpeg", "buffer": b"these are notes, not a photo\n"}


def test_search_shows_thumbnails_scores_metadata_and_the_threshold(
        page: Page, keys: Keys, gallery: dict[str, list[str]], held_out_faces: dict[str, list[Path]]) -> None:
    open_view(page, "search", keys.read)
    hits = search(page, held_out_faces["s29"][5], k=5)
    assert len(hits) == 5
    enrolled = {item_id for ids in gallery.values() for item_id in ids}
    assert all(hit["id"] in enrolled and hit["metadata"]["person"] for hit in hits)
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)
    wait_for_thumbnails(page)
    assert page.locator("#search-hits li.threshold").count() == 1
    no_match = not any(hit["match"] for hit in hits)
    assert page.inner_text("#search-summary").startswith("No match") == no_match
    expect(page.locator("#search-query")).to_have_js_property("naturalWidth", 92)  # the PGM, decoded in the page


def test_held_out_faces_find_their_identity_first(page: Page, keys: Keys, ui_models: Models, screenshot_dir: Path,
                                                  gallery: dict[str, list[str]],
                                                  held_out_faces: dict[str, list[Path]]) -> None:
    if not ui_models.trained:
        pytest.skip("no trained demo models in demo/models: random weights cannot tell faces apart, so only the "
                    "page flows are checked")
    open_view(page, "search", keys.read)
    right = []
    for person, images in held_out_faces.items():
        right.append(search(page, images[5], k=5)[0]["metadata"]["person"] == person)
    print(f"\nUI search, held-out query image 6 of each identity: right identity first {sum(right)}/{len(right)}")
    assert sum(right) > len(right) / 2
    person = next(p for p, ok in zip(held_out_faces, right, strict=True) if ok)
    hits = search(page, held_out_faces[person][5], k=12)  # enough to show hits on both sides of the threshold
    assert hits[0]["metadata"]["person"] == person and hits[0]["match"]
    wait_for_thumbnails(page)
    screenshot(page, screenshot_dir, "search")


def test_search_screenshot_with_random_weights(page: Page, keys: Keys, ui_models: Models, screenshot_dir: Path,
                                               gallery: dict[str, list[str]],
                                               held_out_faces: dict[str, list[Path]]) -> None:
    if ui_models.trained:
        pytest.skip("the trained models' search screenshot is taken by the identity test")
    open_view(page, "search", keys.read)
    search(page, held_out_faces["s30"][5], k=8)
    wait_for_thumbnails(page)
    screenshot(page, screenshot_dir, "search")


def test_item_enrolled_as_an_embedding_shows_a_placeholder(page: Page, keys: Keys, ui_server: LiveServer,
                                                           held_out_faces: dict[str, list[Path]]) -> None:
    with ui_server.client(headers={"X-API-Key": keys.admin}) as http:
        dim = http.get("/v1/tasks/face/index").json()["dim"]
        item = {"id": "bare-view", "embedding": [0.0, 1.0] + [0.0] * (dim - 2), "metadata": {"kind": "bare-view"}}
        assert http.post("/v1/tasks/face/items", json=item).status_code == 200
    open_view(page, "search", keys.read)
    hits = search(page, held_out_faces["s31"][5], k=3, filter={"kind": "bare-view"})
    assert [hit["id"] for hit in hits] == ["bare-view"]
    wait_for_thumbnails(page)
    expect(page.locator("#search-hits .thumb-note")).to_have_text("no image kept")
    assert "no kept image" in page.get_attribute("#search-hits img.thumb", "alt")


def test_delete_from_the_results_and_by_id(page: Page, keys: Keys, gallery: dict[str, list[str]],
                                           held_out_faces: dict[str, list[Path]]) -> None:
    images = held_out_faces["s32"]
    open_view(page, "enroll", keys.write)
    enroll(page, images[8:10], {"kind": "temporary"}, prefix="tmp-")
    go(page, "search")
    query = images[7]
    assert {hit["id"] for hit in search(page, query, filter={"kind": "temporary"})} == {"tmp-s32_0009",
                                                                                       "tmp-s32_0010"}
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#search-hits li.hit[data-id='tmp-s32_0009'] button.delete")
    expect(page.locator("#search-hits li.hit[data-id='tmp-s32_0009']")).to_have_count(0)
    expect(page.locator("#search-summary")).to_contain_text("Deleted tmp-s32_0009")
    assert [hit["id"] for hit in search(page, query, filter={"kind": "temporary"})] == ["tmp-s32_0010"]

    go(page, "enroll")
    page.fill("#delete-id", "tmp-s32_0010")
    page.click("#delete-form button")
    expect(page.locator("#delete-result")).to_have_text("Deleted tmp-s32_0010 from face.")
    page.click("#delete-form button")  # again: the gateway's 404, in words
    expect(page.locator("#delete-error")).to_contain_text("Not found (404): task 'face' has no item 'tmp-s32_0010'")
    go(page, "search")
    search(page, query, filter={"kind": "temporary"})
    expect(page.locator("#search-hits li.empty")).to_have_text("No results: the gallery has nothing that passes "
                                                               "the filter.")


def test_a_bad_file_shows_a_readable_error(page: Page, keys: Keys, gallery: dict[str, list[str]],
                                           held_out_faces: dict[str, list[Path]]) -> None:
    open_view(page, "search", keys.write)
    page.set_input_files("#search-file", NOT_TEXT_IMAGE)
    page.click("#search-form button[type=submit]")
    error = page.locator("#search-error")
    expect(error).to_contain_text("Invalid input (422)")
    expect(error).to_contain_text("not an image in a supported format")
    assert search(page, held_out_faces["s33"][5])  # the page (and the server) keep working

    go(page, "enroll")
    page.set_input_files("#enroll-files", NOT_TEXT_IMAGE)
    page.click("#enroll-form button[type=submit]")
    expect(page.locator("#enroll-error")).to_contain_text("not an image in a supported format")
    page.fill("#enroll-metadata", "{person: s33}")
    page.click("#enroll-form button[type=submit]")
    expect(page.locator("#enroll-error")).to_contain_text("The metadata is not valid JSON")


def test_a_key_without_the_scope_is_refused_in_words(page: Page, keys: Keys,
                                                     held_out_faces: dict[str, list[Path]]) -> None:
    open_view(page, "enroll", keys.read)
    page.set_input_files("#enroll-files", held_out_faces["s34"][9])
    page.click("#enroll-form button[type=submit]")
    expect(page.locator("#enroll-error")).to_contain_text(
        "Forbidden (403): this API key lacks the 'write' scope (it has read)")


def test_verify_two_images_side_by_side(page: Page, keys: Keys, ui_models: Models, screenshot_dir: Path,
                                        held_out_faces: dict[str, list[Path]]) -> None:
    faces = held_out_faces
    open_view(page, "verify", keys.read)
    page.set_input_files("#verify-a", faces["s35"][5])
    drop_file(page, "label[for=verify-b]", faces["s36"][7].name, faces["s36"][7].read_bytes())
    expect(page.locator("#verify-b-preview")).to_be_visible()
    different, numbers = verify(page)
    assert "threshold" in numbers and "score" in numbers
    page.set_input_files("#verify-b", faces["s35"][7])
    same, _ = verify(page)
    if ui_models.trained:
        assert (same, different) == ("Same identity", "Different identities")
    else:
        assert {same, different} <= {"Same identity", "Different identities"}
    screenshot(page, screenshot_dir, "verify")


def test_status_and_rebuild(page: Page, keys: Keys, ui_server: LiveServer, screenshot_dir: Path,
                            gallery: dict[str, list[str]]) -> None:
    open_view(page, "status", keys.read)
    row = page.locator("#status-table tbody tr[data-task=face]")
    expect(row).to_be_visible()
    with ui_server.client(headers={"X-API-Key": keys.read}) as http:
        index = http.get("/v1/tasks/face/index").json()
    cells = row.locator("td")
    assert cells.nth(0).inner_text() == str(index["size"]) and index["size"] >= 60
    assert cells.nth(1).inner_text() == index["model_version"] and cells.nth(2).inner_text() == index["type"]
    page.click("button[aria-label='Rebuild the face index']")
    expect(page.locator("#status-error")).to_contain_text("Forbidden (403): this API key lacks the 'admin' scope")

    page.fill("#api-key", keys.admin)
    page.click("text=Use key")
    page.click("button[aria-label='Rebuild the face index']")
    expect(page.locator("#status-result")).to_contain_text(f"Rebuilt the face index: {index['size']} items")
    expect(page.locator("#status-error")).to_be_hidden()
    expect(row.locator("td").nth(7)).not_to_have_text("never")
    screenshot(page, screenshot_dir, "status")
