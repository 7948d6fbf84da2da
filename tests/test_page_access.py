"""The door (lib.ui.door) and the last line of defence (lib.ui.run_app), through the router."""

import logging
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import CLASSROOM_ACCESS_CODE, CLASSROOM_HOST_CODE
from fakes import plain
from lib.ui import door as access_ui
from lib.ui import state

ENTRY = str(Path(__file__).with_name("app_entry.py"))
HISTORY = str(Path(__file__).resolve().parent.parent / "pages" / "history.py")
pytestmark = pytest.mark.usefixtures("fake_backend")


@pytest.fixture(autouse=True)
def _fresh_attempts():
    for remembered in (access_ui.attempts, access_ui.passes):
        remembered.clear()                # one test's codes neither slow nor open the next
    yield
    for remembered in (access_ui.attempts, access_ui.passes):
        remembered.clear()


def open_app(**query):
    at = AppTest.from_file(ENTRY, default_timeout=120)
    at.query_params.update(query)
    return at.run()


def enter_code(at, code, key="access_code_input", button="Enter"):
    at.text_input(key=key).input(code)
    next(b for b in at.button if b.label == button).click()
    return at.run()


def test_local_use_needs_no_code():
    at = open_app()
    assert not at.exception and at.title[0].value == "Playground"
    assert not [w for w in at.text_input if w.key == "access_code_input"]
    assert not [e for e in at.expander if e.label.startswith("Host")]   # no classroom, no host box


def test_classroom_asks_for_the_access_code_before_anything(classroom_on):
    at = open_app(model_id="gpt2")
    assert not at.exception
    assert "Enter the access code" in at.info[0].value
    assert not at.sidebar.radio and not any(b.label == "Run" for b in at.button)  # nothing else
    enter_code(at, "wrong-code")
    assert "That is not the access code" in at.error[0].value
    assert not any(b.label == "Run" for b in at.button)
    enter_code(at, CLASSROOM_ACCESS_CODE)
    assert not at.exception and at.title[0].value == "Playground"
    assert any(b.label == "Run" for b in at.button)
    # The link's settings apply once the visitor is in.
    assert at.selectbox(key="setting_model_id_random").value == "gpt2"


def test_guessing_the_code_makes_the_address_wait(classroom_on):
    at = open_app()
    for _ in range(5):
        enter_code(at, "not-it")
    enter_code(at, CLASSROOM_ACCESS_CODE)                  # right, but too many wrong before
    assert "Too many wrong codes from this computer" in at.error[0].value
    assert not any(b.label == "Run" for b in at.button)


def test_classroom_without_an_access_code_lets_nobody_in(monkeypatch):
    monkeypatch.setenv("ILE_CLASSROOM", "1")
    monkeypatch.delenv("ILE_ACCESS_CODE", raising=False)
    at = open_app()
    assert not at.exception
    assert "needs an access code, and none is set" in plain(at.error[0].value)
    assert not any(b.label == "Run" for b in at.button)


def test_host_code_unlocks_host_actions_in_the_sidebar(classroom_on):
    at = open_app()
    enter_code(at, CLASSROOM_ACCESS_CODE)
    groups = at.radio(key="setting_model_group").options
    assert "Your own model" not in groups                  # a visitor: catalog models only
    enter_code(at, CLASSROOM_ACCESS_CODE, key="host_code_input", button="Sign in as host")
    assert "That is not the host code" in at.error[0].value   # the access code is not the host's
    enter_code(at, CLASSROOM_HOST_CODE, key="host_code_input", button="Sign in as host")
    assert at.session_state[state.HOST_GRANTED]
    assert "Your own model" in at.radio(key="setting_model_group").options
    at.switch_page(HISTORY).run()
    assert not at.error, at.error[0].value
    assert "you are the host" in at.info[0].value


def test_a_listening_server_turns_other_computers_away(monkeypatch):
    monkeypatch.setattr(access_ui, "client_address", lambda: "192.0.2.40")
    at = open_app()
    assert "serves only the computer it runs on" in plain(at.error[0].value)
    assert not any(b.label == "Run" for b in at.button)


def test_an_unexpected_error_is_logged_not_shown(monkeypatch, caplog):
    from lib.ui import sidebar

    def broken():
        raise RuntimeError("/home/teacher/secret/path exploded")
    monkeypatch.setattr(sidebar, "current_spec", broken)
    with caplog.at_level(logging.ERROR, logger="lib.ui"):
        at = open_app()
    assert not at.exception                                   # no traceback to the browser
    message = at.error[0].value
    assert "Something went wrong on this page" in message and "reference" in message
    assert "secret" not in message
    record = next(r for r in caplog.records if "unexpected error" in r.getMessage())
    assert "secret/path exploded" in record.exc_text and record.getMessage().split()[-1][:-1] \
        in message


def test_a_browser_that_entered_the_codes_is_not_asked_again(classroom_on, monkeypatch):
    from lib.ui import classroom_view as classroom_ui
    monkeypatch.setattr(classroom_ui, "_client", lambda: ("dana-cookie", "s1", False))
    at = open_app()
    enter_code(at, CLASSROOM_ACCESS_CODE)
    enter_code(at, CLASSROOM_HOST_CODE, key="host_code_input", button="Sign in as host")
    again = open_app()                                  # a reload: a new session, same cookie
    assert any(b.label == "Run" for b in again.button)
    assert again.session_state[state.HOST_GRANTED]
    monkeypatch.setattr(classroom_ui, "_client", lambda: ("eve-cookie", "s2", False))
    other = open_app()                                  # another browser is still asked
    assert "Enter the access code" in other.info[0].value


def test_codes_can_come_from_the_secrets_file(monkeypatch):
    monkeypatch.setenv("ILE_CLASSROOM", "1")
    for name in ("ILE_ACCESS_CODE", "ILE_HOST_CODE"):
        monkeypatch.delenv(name, raising=False)
    at = AppTest.from_file(ENTRY, default_timeout=120)
    at.secrets["access_code"] = "from-the-secrets-file"
    at.run()
    enter_code(at, "from-the-secrets-file")
    assert any(b.label == "Run" for b in at.button)
