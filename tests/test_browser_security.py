"""Browser checks of issue 10: what a fresh server does with deep links, its address, and
Markdown smuggled into a link. Each test starts its own server, as a user would start it."""

from __future__ import annotations

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
    navigation = page.locator('[data-testid="stSidebarNav"]')
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
