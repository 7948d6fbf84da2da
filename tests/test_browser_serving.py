"""Browser tests of Serving under load: the real Streamlit server and load generator, driven in
headless Chromium (see tests/test_browser.py for the setup).

The URL test measures a scripted server (tests/sse_server.py) made to answer one request at a
time, so the queue, and with it the knee, is certain: the page, the client, the charts and the
history all run for real. The local-server test starts `transformers serve` through
`lib.serving.local` and is skipped where that module is not there yet.
"""

from __future__ import annotations

import os
import threading

import pytest

import servers
from sse_server import Reply, ScriptedServer
from test_browser import ARTIFACTS, _set_number

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SECRET = "sk-browser-SECRET-42"


@pytest.fixture
def server(app_server):
    """The session's app server (conftest.app_server), shared with test_browser."""
    return app_server


@pytest.fixture
def one_at_a_time():
    """An OpenAI-compatible server writing 8 tokens 25 ms apart, one request at a time."""
    reply = Reply(chunks=[(0.025, f" w{i}", 1) for i in range(8)])
    with ScriptedServer(reply, fields="vllm", models=["tiny"]) as scripted:
        handler = scripted._server.RequestHandlerClass
        answer, lock = handler.do_POST, threading.Lock()

        def serially(self) -> None:
            with lock:
                answer(self)
        handler.do_POST = serially
        yield scripted


def _open_serving(page, server) -> None:
    page.goto(server)
    page.get_by_role("link", name="Serving under load").click()
    page.get_by_role("button", name="Run load sweep").wait_for(timeout=60_000)


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0


def _type_own_levels(page) -> None:
    """The page sizes the load to the machine by default; these tests type their own."""
    page.get_by_text("Size the load to this machine").click()
    page.get_by_role("textbox", name="Levels: users at once").wait_for(timeout=30_000)


def test_a_url_under_load_shows_the_knee_and_keeps_the_key_out_of_the_address(
        server, browser, one_at_a_time):
    page = browser.new_page(viewport={"width": 1400, "height": 5200})
    _open_serving(page, server)
    page.get_by_text("A server URL (any OpenAI-compatible server)").click()
    address = page.get_by_role("textbox", name="Server address")
    address.fill(one_at_a_time.base_url)
    address.press("Enter")
    key = page.get_by_role("textbox", name="API key (optional)")
    key.fill(SECRET)
    key.press("Enter")
    page.wait_for_timeout(300)
    _type_own_levels(page)
    levels = page.get_by_role("textbox", name="Levels: users at once")
    levels.fill("1, 4")
    levels.press("Enter")
    _set_number(page, "Answer length per request (tokens)", 8)
    _set_number(page, "Requests per level", 10)
    page.get_by_role("button", name="Run load sweep").click()
    page.get_by_text("Saved as #").wait_for(timeout=240_000)
    page.get_by_text("the server is saturated").first.wait_for()
    page.locator(".js-plotly-plot").nth(3).wait_for(timeout=60_000)     # drawn after the text
    assert page.locator(".js-plotly-plot").count() == 4
    page.locator("text=/knee: waits grew [0-9.]+x by 4 concurrent requests/").first.wait_for()
    _no_exception(page)
    assert SECRET not in page.url
    assert all(request["headers"].get("Authorization") == f"Bearer {SECRET}"
               for request in one_at_a_time.requests if request.get("body"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serving-url.png"), full_page=True)
    # The same run opens in History.
    page.get_by_role("link", name="History").click()
    page.get_by_text("load sweep: 1, 4").first.wait_for(state="attached", timeout=60_000)
    _no_exception(page)


def test_a_newcomer_starts_the_local_server_and_sees_the_load_sweep(server, browser):
    pytest.importorskip("lib.serving.local", reason="lib.serving.local is not merged yet")
    page = browser.new_page(viewport={"width": 1400, "height": 5200})
    _open_serving(page, server)
    _type_own_levels(page)
    levels = page.get_by_role("textbox", name="Levels: users at once")
    levels.fill("1, 4")
    levels.press("Enter")
    _set_number(page, "Requests per level", 4)
    _set_number(page, "Answer length per request (tokens)", 8)
    page.get_by_role("button", name="Run load sweep").click()
    page.get_by_text("Saved as #").wait_for(timeout=600_000)
    page.locator(".js-plotly-plot").nth(3).wait_for(timeout=60_000)
    assert page.locator(".js-plotly-plot").count() == 4
    _no_exception(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serving-local.png"), full_page=True)


def test_killing_the_app_mid_run_leaves_no_server_behind(browser, tmp_path,
                                                        model_cache_dir):
    """The app started `transformers serve`, then dies without warning (SIGKILL: no atexit,
    no finally): its child server must go too, and free its port."""
    import signal
    import time

    import psutil

    log = tmp_path / "streamlit.log"
    env = dict(os.environ, ILE_CACHE_DIR=str(model_cache_dir))
    with servers.streamlit_app(log, env) as port:
        app = next(p for p in psutil.Process().children()
                   if "streamlit" in " ".join(p.cmdline()) and str(port) in p.cmdline())
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        _open_serving(page, f"http://127.0.0.1:{port}")
        _type_own_levels(page)
        levels = page.get_by_role("textbox", name="Levels: users at once")
        levels.fill("2")
        levels.press("Enter")
        _set_number(page, "Requests per level", 500)
        page.get_by_role("button", name="Run load sweep").click()
        deadline, children = time.monotonic() + 180, []
        while time.monotonic() < deadline and not children:
            children = [p for p in app.children(recursive=True)
                        if "lib.serving.child" in " ".join(p.cmdline())]
            time.sleep(0.5)
        assert children, "the page never started the local server"
        page.get_by_text("measured requests done").first.wait_for(timeout=180_000)
        listening = [c.laddr.port for c in children[0].net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
        app.send_signal(signal.SIGKILL)
        app.wait(timeout=15)
        gone_by = time.monotonic() + 15
        while time.monotonic() < gone_by and any(
                c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children):
            time.sleep(0.2)
        assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children), \
            "the local server outlived the app"
        for server_port in listening:
            with pytest.raises(ConnectionRefusedError):
                socket_connect(server_port)


def socket_connect(port: int) -> None:
    import socket
    socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
