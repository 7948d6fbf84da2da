"""lib.access: local-only by default, codes for a classroom, guessing slowed down."""

import pytest

from lib import access

CODES = access.Codes(access="open-sesame", host="teacher-only")


def test_default_local_use_needs_no_code():
    decision = access.decide(None, "127.0.0.1", classroom_on=False, codes=access.Codes(None, None))
    assert decision == access.Decision(True)


def test_other_computers_are_refused_without_classroom_mode():
    decision = access.decide("192.0.2.7", "0.0.0.0", classroom_on=False, codes=CODES)
    assert not decision.allowed and "serves only the computer it runs on" in decision.message
    # This computer still works, warned that the app is listening on the network.
    local = access.decide(None, "0.0.0.0", classroom_on=False, codes=CODES)
    assert local.allowed and "ILE_CLASSROOM=1" in local.message
    assert access.decide("127.0.0.1", None, False, CODES).message == access.EXPOSED_WARNING


@pytest.mark.parametrize("address", [None, "127.0.0.1", "192.0.2.7"])
def test_classroom_asks_everyone_for_the_code(address):
    # Loopback too: behind a reverse proxy every visitor connects from 127.0.0.1.
    assert access.decide(address, "0.0.0.0", True, CODES) == access.Decision(True, True)


@pytest.mark.parametrize("codes, words", [
    (access.Codes(None, "teacher-only"), "needs an access code"),
    (access.Codes("short", "teacher-only"), "at least 6 characters"),
    (access.Codes("same-code", "same-code"), "are the same"),
])
def test_classroom_without_usable_codes_lets_nobody_in(codes, words):
    decision = access.decide(None, "0.0.0.0", True, codes)
    assert not decision.allowed and words in decision.message


def test_codes_from_environment_then_secrets_blank_is_unset():
    assert access.load_codes({"ILE_ACCESS_CODE": " abc123 "}, {"host_code": "xyz789"}) == \
        access.Codes("abc123", "xyz789")
    assert access.load_codes({"ILE_ACCESS_CODE": "   "}, {}) == access.Codes(None, None)
    assert access.load_codes({}, {"access_code": "from-file"}).access == "from-file"


def test_matches_is_exact():
    assert access.matches("open-sesame", "open-sesame")
    assert access.matches(" open-sesame ", "open-sesame")          # pasted with spaces
    for wrong in ("open-sesamE", "open-sesame!", "", None, "\udcff"):
        assert not access.matches(wrong, "open-sesame")
    assert not access.matches("anything", None)


def test_wrong_codes_make_one_address_wait_longer_and_longer():
    now = [1000.0]
    attempts = access.Attempts(clock=lambda: now[0])
    for _ in range(access.FREE_ATTEMPTS):
        assert attempts.wait_s("192.0.2.7") == 0
        attempts.failed("192.0.2.7")
    assert attempts.wait_s("192.0.2.7") == access.FIRST_WAIT_S
    assert attempts.wait_s("192.0.2.8") == 0                        # other addresses unaffected
    now[0] += access.FIRST_WAIT_S
    assert attempts.wait_s("192.0.2.7") == 0
    attempts.failed("192.0.2.7")
    assert attempts.wait_s("192.0.2.7") == 2 * access.FIRST_WAIT_S
    attempts.succeeded("192.0.2.7")
    assert attempts.wait_s("192.0.2.7") == 0
    for _ in range(60):
        attempts.failed("192.0.2.9")
    assert attempts.wait_s("192.0.2.9") == access.MAX_WAIT_S
    now[0] += access.FORGET_AFTER_S + 1
    assert attempts.wait_s("192.0.2.9") == 0


def test_passes_remember_a_browser_for_a_day_and_can_be_revoked():
    now = [0.0]
    passes = access.Passes(clock=lambda: now[0])
    passes.grant("browser-a", "access")
    assert passes.holds("browser-a", "access")
    assert not passes.holds("browser-a", "host") and not passes.holds("browser-b", "access")
    assert not passes.holds(None, "access")
    passes.grant(None, "access")                  # no cookie: nothing to remember it by
    assert not passes.holds(None, "access")
    now[0] += access.PASS_HOURS * 3600 + 1
    assert not passes.holds("browser-a", "access")
    passes.grant("browser-a", "host")
    passes.revoke("browser-a", "host")
    assert not passes.holds("browser-a", "host")
