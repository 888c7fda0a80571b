"""The page as served: its files come from the gateway only, the key field works, and the thumbnail endpoint
keeps to its size limit, caches, and answers a placeholder for an item enrolled as a bare embedding."""

from __future__ import annotations

import io

import httpx
from PIL import Image
from playwright.sync_api import Page, expect

from service.api.routes.ui import MAX_SIZE
from tests.service.api.conftest import LiveServer

from .conftest import Keys
from .driver import open_view, use_key


def api(server: LiveServer, key: str) -> httpx.Client:
    return server.client(headers={"X-API-Key": key})


def test_page_and_its_files_are_served_with_a_same_origin_policy(ui_server: LiveServer) -> None:
    with ui_server.client() as http:
        page = http.get("/ui")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "<label for=\"api-key\">" in page.text and "http" not in page.text.split("<footer")[0].lower()
        for name, kind in (("app.js", "text/javascript"), ("api.js", "text/javascript"), ("style.css", "text/css")):
            response = http.get(f"/ui/{name}")
            assert response.status_code == 200 and response.headers["content-type"].startswith(kind), name
        for missing in ("nothing.js", "..%2Fapi%2Froutes%2Fui.py", "index.py"):
            response = http.get(f"/ui/{missing}")
            assert response.status_code == 404, missing
            assert response.headers["content-type"] == "application/problem+json"


def test_everything_the_page_loads_comes_from_the_gateway(page: Page, ui_server: LiveServer, keys: Keys) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    open_view(page, "search", keys.read)
    for view in ("enroll", "verify", "status"):
        page.click(f"nav a[data-view={view}]")
    expect(page.locator("#status-table tbody tr").first).to_be_visible()
    outside = [url for url in requested if not url.startswith((ui_server.url, "blob:", "data:"))]
    assert requested and not outside, outside


def test_the_key_is_asked_for_and_kept_for_the_tab(page: Page, keys: Keys) -> None:
    page.goto("/ui")
    error = page.locator("#global-error")
    expect(error).to_contain_text("Could not load the tasks. Unauthorized (401): an API key is required")
    page.fill("#api-key", "ufo_00000000_not-a-key")
    page.click("text=Use key")
    expect(error).to_contain_text("the API key is not valid")
    use_key(page, keys.read)
    assert page.evaluate("sessionStorage.getItem('ufo.apiKey')") == keys.read
    page.reload()  # same tab: the key is still there and sent
    expect(page.locator("#task option[value=face]")).to_be_attached()
    assert page.input_value("#api-key") == keys.read
    page.click("#forget-key")
    assert page.evaluate("sessionStorage.getItem('ufo.apiKey')") is None


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.linear_gradient("L").resize((width, height)).convert("RGB").save(out, "PNG")
    return out.getvalue()


def test_thumbnails_are_small_cached_jpegs_of_the_kept_image(ui_server: LiveServer, keys: Keys) -> None:
    with api(ui_server, keys.admin) as http:  # an id with a slash, as `ufo demo` enrolls them
        files = {"image": ("gradient.png", png(300, 200), "image/png")}
        assert http.post("/v1/tasks/face/items", data={"id": "thumb/one", "metadata": '{"kind": "gradient"}'},
                         files=files).status_code == 200
        small = http.get("/v1/tasks/face/thumbnails/thumb%2Fone", params={"size": 32})
        assert small.status_code == 200 and small.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(small.content)).size == (32, 21)  # aspect ratio kept
        again = http.get("/v1/tasks/face/thumbnails/thumb%2Fone", params={"size": 32},
                         headers={"If-None-Match": small.headers["etag"]})
        assert again.status_code == 304
        too_big = http.get("/v1/tasks/face/thumbnails/thumb%2Fone", params={"size": MAX_SIZE + 1})
        assert too_big.status_code == 422 and "size" in too_big.json()["detail"]
        assert http.get("/v1/tasks/face/thumbnails/nobody").status_code == 404
    with ui_server.client() as anonymous:
        assert anonymous.get("/v1/tasks/face/thumbnails/thumb%2Fone").status_code == 401


def test_an_item_enrolled_as_an_embedding_gets_a_placeholder(ui_server: LiveServer, keys: Keys) -> None:
    with api(ui_server, keys.admin) as http:
        dim = http.get("/v1/tasks/face/index").json()["dim"]
        item = {"id": "bare", "embedding": [1.0] + [0.0] * (dim - 1), "metadata": {"kind": "embedding-only"}}
        assert http.post("/v1/tasks/face/items", json=item).status_code == 200
        response = http.get("/v1/tasks/face/thumbnails/bare")
        assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")
        assert response.headers["x-ufo-thumbnail"] == "placeholder" and "embedding only" in response.text
