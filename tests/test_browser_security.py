"""Browser checks of what comes from outside: what a fresh server does with deep links, its
address, Markdown smuggled into a link, and outside text (an import's every field, link values)
that must never become a link or an image. Each test starts its own server, as a user would."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

import servers
from test_browser import ARTIFACTS, require_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def fresh_server(tmp_path, model_cache_dir):
    """A server nobody has opened yet, started with the project's own config."""
    require_browser()
    env = dict(os.environ, ILE_CACHE_DIR=str(model_cache_dir),
               ILE_DATA_DIR=str(tmp_path / "data"))
    with servers.streamlit_app(tmp_path / "streamlit.log", env) as port:
        yield port


def test_a_deep_link_opened_first_after_a_start_goes_through_the_router(fresh_server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    page.goto(f"http://127.0.0.1:{fresh_server}/history")
    page.get_by_role("heading", name="History").wait_for(timeout=60_000)
    page.get_by_role("heading", name="Settings").wait_for(timeout=30_000)   # the sidebar
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0    # Streamlit's own list
    navigation = page.locator(".st-key-page_menu")                         # the router's menu
    navigation.get_by_text("Serving under load", exact=True).wait_for(timeout=30_000)
    for title in ("Playground", "Explore factors", "History"):
        assert navigation.get_by_text(title, exact=True).count() == 1
    assert navigation.get_by_text("app", exact=True).count() == 0
    page.get_by_role("link", name="Explore factors").click()
    page.get_by_role("button", name="Run sweep").wait_for(timeout=30_000)
    assert page.get_by_role("button", name="Run sweep").is_enabled()
    assert page.locator('[data-testid="stException"]').count() == 0


def test_the_server_listens_on_this_computer_only(fresh_server):
    from lib.ui.links import network_address
    with urllib.request.urlopen(f"http://127.0.0.1:{fresh_server}/_stcore/health",
                                timeout=5) as response:
        assert response.status == 200
    network = network_address()
    if network is None:
        pytest.skip("this machine has no network address to try")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{network}:{fresh_server}/_stcore/health", timeout=5)


def test_markdown_in_a_link_is_shown_as_text_not_a_link(fresh_server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    smuggled = "[Your session expired - click here](https://evil.example/login)"
    page.goto(f"http://127.0.0.1:{fresh_server}/?model_id=" + urllib.request.quote(smuggled)
              + "&batch_size=1000")
    page.get_by_text("Your session expired - click here").first.wait_for(timeout=60_000)
    page.get_by_text("above the highest value 64, so 64 is used").wait_for()
    page.get_by_role("heading", name="Playground").wait_for(timeout=60_000)
    assert page.locator('a[href*="evil.example"]').count() == 0
    assert page.locator('[data-testid="stException"]').count() == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "hostile-link.png"), full_page=True)


EVIL = ("see http://evil.example/a, www.evil.example/b, x@evil.example and "
        "[click](http://evil.example/c) ![i](http://evil.example/d.png)")


@pytest.fixture
def hostile_history_server(tmp_path, model_cache_dir):
    """A server whose history holds an import with outside links in every text field."""
    require_browser()
    from fakes import fake_runner
    from lib.core import stats
    from lib.core.spec import RunSpec
    from lib.records import imports, saving
    from lib.records.store import Store

    store = Store(tmp_path / "data" / "history.sqlite3")
    measurement = fake_runner(RunSpec(prompt_tokens=16, new_tokens=3, repetitions=2,
                                      min_duration_s=0.0, threads=1))
    entry_id = saving.save_run(measurement, stats.summarize(measurement), store)[0]
    document = store.export(entry_id)
    store.delete(entry_id)
    document.update(note=EVIL, imported_from=EVIL, generated_text=EVIL, warnings=[EVIL])
    document["environment"].update(cpu_model=EVIL, gpu_name=EVIL)
    document["prompt"] = dict(document.get("prompt") or {}, text=EVIL)
    checked = imports.check_bytes(json.dumps(document).encode(), "hostile.json")
    imported = store.import_document(checked.document)
    env = dict(os.environ, ILE_CACHE_DIR=str(model_cache_dir),
               ILE_DATA_DIR=str(tmp_path / "data"))
    with servers.streamlit_app(tmp_path / "streamlit.log", env) as port:
        yield f"http://127.0.0.1:{port}", imported


def test_no_outside_text_becomes_a_link_on_any_page(hostile_history_server, browser):
    """Outside text (an import's every field, a link's values) is shown, never clickable:
    not as Markdown, not as a bare address Streamlit would link by itself."""
    server, imported = hostile_history_server
    page = browser.new_page(viewport={"width": 1400, "height": 3000})
    evil = 'a[href*="evil"], img[src*="evil"]'
    page.goto(server + "/history")
    page.get_by_text("Select a row to open it").wait_for(timeout=60_000)
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.wait_for()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)          # open the imported entry
    page.get_by_text(f"#{imported}: run:").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "hostile-import.png"), full_page=True)
    found = page.locator(evil).evaluate_all(
        "els => els.map(e => [...(function*(n){while(n){if(n.dataset&&n.dataset.testid)"
        "yield n.dataset.testid; n=n.parentElement}})(e)].slice(0,3).join('<') + ': ' + "
        "e.parentElement.textContent.slice(0, 60))")
    assert page.locator(evil).count() == 0, found
    assert page.locator('[data-testid="stException"]').count() == 0
    page.goto(server + "/explore?values2=" + urllib.request.quote(
        "float32,[x](http://evil.example/f),http://evil.example/g"))
    page.get_by_role("button", name="Run sweep").wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    assert page.locator(evil).count() == 0
    for path in ("/", "/serving"):
        page.goto(server + path + "?model_id=" + urllib.request.quote(EVIL))
        page.get_by_text("evil").first.wait_for(timeout=60_000)
        page.wait_for_timeout(500)
        assert page.locator(evil).count() == 0, path
