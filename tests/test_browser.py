"""Browser tests: the real Streamlit server, driven in headless Chromium with Playwright.

They cover what only a browser shows: the page loads through the router, Run works from a click,
the plotly chart draws, and no exception box appears. A screenshot is saved under
tests/artifacts/ for a person to look at. In CI (CI=true) a missing browser is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import servers
from conftest import CLASSROOM_ACCESS_CODE, CLASSROOM_HOST_CODE

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def require_browser() -> None:
    missing = not Path(CHROMIUM).exists()
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing = True
    if missing:
        if os.environ.get("CI"):
            pytest.fail("Chromium or Playwright is missing: scripts/setup.sh --test installs them.")
        pytest.skip("Chromium or Playwright not installed (scripts/setup.sh --test installs them)")


@pytest.fixture
def server(app_server):
    """The session's app server (conftest.app_server), shared with test_browser_serving."""
    return app_server


# Where the page's flow is under test (queueing, stopping, a sweep's charts), not the model:
# every model on a fake backend whose latencies pass in real time (tests/fake_backend_app.py).
QUIET = {"prefill_s": 0.05, "decode_s": 0.02, "load_s": 0.0, "other_cpu_percent": 0.0}


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory, model_cache_dir):
    import json

    require_browser()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    env = dict(os.environ, ILE_CACHE_DIR=str(model_cache_dir), ILE_FAKE_BACKEND=json.dumps(QUIET))
    with servers.streamlit_app(log, env, script="tests/fake_backend_app.py") as port:
        yield f"http://127.0.0.1:{port}"


def _set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    page.wait_for_timeout(300)


def test_playground_run_draws_chart_and_history_lists_it(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 3400})
    page.goto(server + "/?repetitions=3&min_duration_s=0")    # three timed runs are plenty here
    page.get_by_role("button", name="Run").wait_for(timeout=60_000)
    _set_number(page, "Output length (tokens)", 12)
    page.get_by_role("button", name="Run").click()
    page.locator(".js-plotly-plot").first.wait_for(timeout=240_000)
    page.get_by_text("Time to first token (TTFT)").first.wait_for()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stMetric"]').count() >= 7
    # The chart really has data: one marker per repetition for TTFT, lines for the rest.
    assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 3
    # The run is saved, and History lists it.
    page.get_by_text("Saved in History as #").wait_for(timeout=60_000)
    page.get_by_role("link", name="History").click()
    page.get_by_text("Select a row to open it").wait_for(timeout=60_000)
    page.locator('[data-testid="stDataFrame"]').first.wait_for()
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(ARTIFACTS / "history.png"), full_page=True)


def test_bad_input_shows_message_and_page_keeps_working(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    page.goto(server)
    page.get_by_role("button", name="Run").wait_for(timeout=60_000)
    _set_number(page, "Prompt length (tokens)", 8000)
    _set_number(page, "Output length (tokens)", 500)
    from playwright.sync_api import expect

    page.get_by_text("reads at most 8192 tokens").wait_for(timeout=60_000)
    # By state, not by the one button: while a rerun draws, the old button can still be there.
    page.get_by_role("button", name="Run", disabled=True).wait_for(timeout=30_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    _set_number(page, "Prompt length (tokens)", 64)           # fixed: Run works again
    expect(page.get_by_role("button", name="Run", disabled=True)).to_have_count(
        0, timeout=30_000)
    page.get_by_role("button", name="Run", disabled=False).first.wait_for(timeout=30_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "playground-bad-input.png"), full_page=True)


def test_second_session_waits_in_the_queue_and_is_told(fake_server, browser):
    server = fake_server
    first = browser.new_context().new_page()
    second = browser.new_context().new_page()
    # Two timed repetitions each (from a shared link): long enough for the second to queue.
    for page, tokens in ((first, 80), (second, 4)):
        page.set_viewport_size({"width": 1400, "height": 2400})
        page.goto(server + f"/?new_tokens={tokens}&repetitions=2&min_duration_s=0")
        page.get_by_role("button", name="Run").wait_for(timeout=60_000)
    first.get_by_role("button", name="Run").click()
    first.get_by_text("timed repetition").first.wait_for(timeout=120_000)
    second.get_by_role("button", name="Run").click()
    second.get_by_text("is using this machine").wait_for(timeout=30_000)
    assert first.locator(".js-plotly-plot").count() == 0        # the first is still running
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    second.screenshot(path=str(ARTIFACTS / "playground-queued.png"))
    for page in (first, second):
        page.locator(".js-plotly-plot").first.wait_for(timeout=240_000)
        assert page.locator('[data-testid="stException"]').count() == 0


def test_playground_stop_ends_the_run_and_says_so(fake_server, browser):
    server = fake_server
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    page.goto(server + "/?warmup_runs=0")          # timed from the first call: stopped sooner
    page.get_by_role("button", name="Run").wait_for(timeout=60_000)
    _set_number(page, "Output length (tokens)", 200)
    page.get_by_role("button", name="Run").click()
    page.get_by_text("timed repetition 1 of").wait_for(timeout=240_000)
    page.get_by_text("Time so far:").wait_for()
    page.get_by_role("button", name="Stop").click()
    page.get_by_text("Stopped.").wait_for(timeout=120_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "playground-stopped.png"), full_page=True)
    # The model stayed loaded and ready: a short run works at once.
    _set_number(page, "Output length (tokens)", 3)
    page.get_by_role("button", name="Run").click()
    page.locator(".js-plotly-plot").first.wait_for(timeout=240_000)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_pick_a_random_weight_model_and_run_it(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 3400})
    page.goto(server + "/?repetitions=2&min_duration_s=0&warmup_runs=0")
    page.get_by_role("button", name="Run").wait_for(timeout=60_000)
    page.get_by_text("Famous architectures, random weights").click()
    page.get_by_text("About the model: GPT-2 (124M, 2019)").wait_for(timeout=30_000)
    page.get_by_text("About the model: GPT-2 (124M, 2019)").click()       # open the card
    page.get_by_text("each token of context costs 73.7 KB").wait_for()
    _set_number(page, "Output length (tokens)", 6)
    page.get_by_role("button", name="Run").click()
    page.locator(".js-plotly-plot").first.wait_for(timeout=240_000)
    page.get_by_text("Random weights: the 6 generated tokens are meaningless").wait_for()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "playground-gpt2.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0


def _open_explore(page, server, output_tokens: int, link: str = "") -> None:
    page.goto(server + f"/?new_tokens={output_tokens}&prompt_tokens=16{link}")
    page.get_by_role("button", name="Run").wait_for(timeout=60_000)
    page.get_by_role("link", name="Explore factors").click()
    page.get_by_role("button", name="Run sweep").wait_for(timeout=60_000)


def test_explore_sweep_draws_every_chart(fake_server, browser):
    server = fake_server
    page = browser.new_page(viewport={"width": 1400, "height": 4200})
    _open_explore(page, server, output_tokens=4, link="&min_duration_s=0")   # 5 repetitions
    values = page.get_by_label("Values of batch size (comma-separated)")
    values.fill("1, 2, 4")
    values.press("Enter")
    page.wait_for_timeout(300)
    page.get_by_role("button", name="Run sweep").click()
    page.get_by_text("What changed").wait_for(timeout=240_000)
    page.locator(".js-plotly-plot").nth(3).wait_for(timeout=60_000)
    assert page.locator(".js-plotly-plot").count() == 4
    # A finding about batch 1 against 4: a ratio, or "within the noise" on a busy machine.
    import re
    page.get_by_text(re.compile(r"(From batch size 1 to 4|Batch size 1 vs 4)")).first.wait_for()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "explore-batch.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_stop_keeps_the_finished_points(fake_server, browser):
    server = fake_server
    page = browser.new_page(viewport={"width": 1400, "height": 3000})
    _open_explore(page, server, output_tokens=48)
    values = page.get_by_label("Values of batch size (comma-separated)")
    values.fill("1, 2, 4, 8")
    values.press("Enter")
    page.wait_for_timeout(300)
    page.get_by_role("button", name="Run sweep").click()
    page.get_by_text("Measuring, round 2").wait_for(timeout=240_000)
    page.get_by_role("button", name="Stop").click()
    try:
        page.get_by_text("Stopped:").wait_for(timeout=120_000)
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "explore-stopped.png"), full_page=True)
    text = page.get_by_text("Stopped:").inner_text()
    # Interleaved rounds: every point is part-way; each keeps what it measured.
    assert text.startswith("Stopped: 4 of 4 points have results") and "stopped early" in text
    page.get_by_text("All points").wait_for(timeout=30_000)       # the kept points' table
    page.locator("[data-testid=\"stDataFrame\"]").first.wait_for(timeout=30_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "explore-stopped.png"), full_page=True)


def test_shared_link_restores_settings_and_does_not_run(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    page.goto(server + "/?batch_size=4&new_tokens=7&dtype=bfloat16")
    page.get_by_role("button", name="Run").wait_for(timeout=60_000)
    from playwright.sync_api import expect
    expect(page.get_by_label("Output length (tokens)", exact=True)).to_have_value("7")
    # The model card (collapsed) is computed for the restored dtype.
    page.get_by_text("Weights in bfloat16").first.wait_for(state="attached")
    page.get_by_text("No results yet").wait_for()
    assert page.locator(".js-plotly-plot").count() == 0
    page.get_by_text("Share these settings").click()
    page.get_by_text("batch_size=4").first.wait_for()
    assert page.locator('[data-testid="stException"]').count() == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "shared-link.png"), full_page=True)


# --- classroom mode: two browsers, a host and a student ---------------------------------------

@pytest.fixture
def classroom_server(tmp_path, model_cache_dir):
    """A classroom server listening on the network, with a history the host wrote earlier:
    one run shared with the class, one kept private."""
    require_browser()
    from fakes import fake_runner
    from lib.records import saving
    from lib.core import stats
    from lib.core.spec import RunSpec
    from lib.records.store import Store
    from lib.ui.links import network_address

    network = network_address()
    if network is None:
        pytest.skip("this machine has no network address for a second 'computer' to use")
    store = Store(tmp_path / "data" / "history.sqlite3")
    ids = {}
    for name, batch in (("shared", 2), ("private", 4)):
        spec = RunSpec(prompt_tokens=16, new_tokens=3, repetitions=2, min_duration_s=0.0,
                       threads=1, batch_size=batch)
        measurement = fake_runner(spec)
        ids[name] = saving.save_run(measurement, stats.summarize(measurement), store)[0]
    store.set_shared(ids["shared"], True)
    log = tmp_path / "streamlit.log"
    env = dict(os.environ, ILE_CACHE_DIR=str(model_cache_dir), ILE_CLASSROOM="1",
               ILE_DATA_DIR=str(tmp_path / "data"), ILE_ACCESS_CODE=CLASSROOM_ACCESS_CODE,
               ILE_HOST_CODE=CLASSROOM_HOST_CODE)
    with servers.streamlit_app(log, env, ["--server.address", "0.0.0.0"]) as port:
        yield {"host": f"http://127.0.0.1:{port}", "student": f"http://{network}:{port}",
               "network": network, "port": port, "store": store, "ids": ids}


def _open_history(page, url):
    page.goto(url)
    page.get_by_role("button", name="Run").wait_for(timeout=60_000)
    page.get_by_role("link", name="History").click()
    page.get_by_text("Classroom mode").first.wait_for(timeout=60_000)
    page.wait_for_timeout(500)


def _enter_code(page, label: str, code: str, button: str) -> None:
    box = page.get_by_label(label)
    box.wait_for(timeout=60_000)
    box.fill(code)
    page.get_by_role("button", name=button).click()


def _select_first_row(page):
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.wait_for()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)     # the first row's checkbox


def test_classroom_host_and_student_see_and_do_different_things(classroom_server, browser):
    from playwright.sync_api import expect
    server = classroom_server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    host = browser.new_context(viewport={"width": 1400, "height": 2000}).new_page()
    student = browser.new_context(viewport={"width": 1400, "height": 2000}).new_page()

    # The student (another computer): the access code first; then no "your own model", and
    # only the shared entry.
    # The first visit since the server started: nothing lists the pages before the door.
    student.goto(server["student"], wait_until="commit")
    seen = []
    while not student.get_by_label("Access code").is_visible():
        seen.append(student.inner_text("body").lower())
        student.wait_for_timeout(50)
    pages = {"app", "explore", "history", "playground", "serving", "explore factors"}
    assert seen and not [text for text in seen if pages & set(text.split("\n"))]
    assert student.get_by_role("button", name="Run").count() == 0
    _enter_code(student, "Access code", "wrong-code", "Enter")
    student.get_by_text("That is not the access code").wait_for(timeout=30_000)
    _enter_code(student, "Access code", CLASSROOM_ACCESS_CODE, "Enter")
    student.get_by_role("button", name="Run").wait_for(timeout=60_000)
    student.get_by_text("Famous architectures, random weights").wait_for()
    assert student.get_by_text("Your own model").count() == 0
    _open_history(student, server["student"])
    student.get_by_text("Classroom mode: you see your own results").wait_for()
    _select_first_row(student)
    student.get_by_text(f"#{server['ids']['shared']}: run:").wait_for(timeout=30_000)
    student.get_by_text("Shared by the host").wait_for()
    assert student.get_by_role("button", name="Delete").count() == 0
    assert student.get_by_text(f"#{server['ids']['private']}").count() == 0
    assert student.get_by_text("run: smollm2-135m-instruct, batch 2").count() >= 1
    assert student.get_by_text("run: smollm2-135m-instruct, batch 4").count() == 0
    student.screenshot(path=str(ARTIFACTS / "classroom-student.png"), full_page=True)

    # The host: the access code, then the host code in the sidebar; then everything, a share
    # button, and a link students can open.
    host.goto(server["host"])
    _enter_code(host, "Access code", CLASSROOM_ACCESS_CODE, "Enter")
    host.get_by_role("button", name="Run").wait_for(timeout=60_000)
    host.get_by_text("Host", exact=True).click()
    _enter_code(host, "Host code", CLASSROOM_HOST_CODE, "Sign in as host")
    host.get_by_text("Your own model", exact=True).wait_for(timeout=30_000)
    host.get_by_text("Share these settings").click()
    host.get_by_text(f"http://{server['network']}:{server['port']}").first.wait_for()
    host.get_by_text("their own computer").wait_for()
    _open_history(host, server["host"])
    host.get_by_text("Classroom mode, and you are the host").wait_for()
    _select_first_row(host)                                   # the newest: the private one
    host.get_by_text(f"#{server['ids']['private']}: run:").wait_for(timeout=30_000)
    host.get_by_role("button", name="Share with the class").click()
    expect(host.get_by_role("button", name="Stop sharing")).to_be_visible(timeout=30_000)
    host.screenshot(path=str(ARTIFACTS / "classroom-host.png"), full_page=True)
    assert all(e["shared"] for e in server["store"].list())

    # The student now sees both; still no Delete for either.
    _open_history(student, server["student"])
    student.get_by_text("run: smollm2-135m-instruct, batch 4").first.wait_for(
        state="attached", timeout=30_000)               # the grid's cells are drawn on a canvas
    student.screenshot(path=str(ARTIFACTS / "classroom-student-after-share.png"),
                       full_page=True)
    for page in (host, student):
        assert page.locator('[data-testid="stException"]').count() == 0
