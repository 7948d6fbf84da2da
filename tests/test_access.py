"""lib.access.network: local-only by default, codes for a classroom, guessing slowed down."""

import pytest

from lib.access import network

CODES = network.Codes(access="open-sesame", host="teacher-only")


def test_default_local_use_needs_no_code():
    decision = network.decide(None, "127.0.0.1", classroom_on=False, codes=network.Codes(None, None))
    assert decision == network.Decision(True)


def test_other_computers_are_refused_without_classroom_mode():
    decision = network.decide("192.0.2.7", "0.0.0.0", classroom_on=False, codes=CODES)
    assert not decision.allowed and "serves only the computer it runs on" in decision.message
    # This computer still works, warned that the app is listening on the network.
    local = network.decide(None, "0.0.0.0", classroom_on=False, codes=CODES)
    assert local.allowed and "ILE_CLASSROOM=1" in local.message
    assert network.decide("127.0.0.1", None, False, CODES).message == network.EXPOSED_WARNING


@pytest.mark.parametrize("address", [None, "127.0.0.1", "192.0.2.7"])
def test_classroom_asks_everyone_for_the_code(address):
    # Loopback too: behind a reverse proxy every visitor connects from 127.0.0.1.
    assert network.decide(address, "0.0.0.0", True, CODES) == network.Decision(True, True)


@pytest.mark.parametrize("codes, words", [
    (network.Codes(None, "teacher-only"), "needs an access code"),
    (network.Codes("short", "teacher-only"), "at least 6 characters"),
    (network.Codes("same-code", "same-code"), "are the same"),
])
def test_classroom_without_usable_codes_lets_nobody_in(codes, words):
    decision = network.decide(None, "0.0.0.0", True, codes)
    assert not decision.allowed and words in decision.message


def test_codes_from_environment_then_secrets_blank_is_unset():
    assert network.load_codes({"ILE_ACCESS_CODE": " abc123 "}, {"host_code": "xyz789"}) == \
        network.Codes("abc123", "xyz789")
    assert network.load_codes({"ILE_ACCESS_CODE": "   "}, {}) == network.Codes(None, None)
    assert network.load_codes({}, {"access_code": "from-file"}).access == "from-file"


def test_matches_is_exact():
    assert network.matches("open-sesame", "open-sesame")
    assert network.matches(" open-sesame ", "open-sesame")          # pasted with spaces
    for wrong in ("open-sesamE", "open-sesame!", "", None, "\udcff"):
        assert not network.matches(wrong, "open-sesame")
    assert not network.matches("anything", None)


def test_wrong_codes_make_one_address_wait_longer_and_longer():
    now = [1000.0]
    attempts = network.Attempts(clock=lambda: now[0])
    for _ in range(network.FREE_ATTEMPTS):
        assert attempts.wait_s("192.0.2.7") == 0
        attempts.failed("192.0.2.7")
    assert attempts.wait_s("192.0.2.7") == network.FIRST_WAIT_S
    assert attempts.wait_s("192.0.2.8") == 0                        # other addresses unaffected
    now[0] += network.FIRST_WAIT_S
    assert attempts.wait_s("192.0.2.7") == 0
    attempts.failed("192.0.2.7")
    assert attempts.wait_s("192.0.2.7") == 2 * network.FIRST_WAIT_S
    attempts.succeeded("192.0.2.7")
    assert attempts.wait_s("192.0.2.7") == 0
    for _ in range(60):
        attempts.failed("192.0.2.9")
    assert attempts.wait_s("192.0.2.9") == network.MAX_WAIT_S
    now[0] += network.FORGET_AFTER_S + 1
    assert attempts.wait_s("192.0.2.9") == 0


def test_passes_remember_a_browser_for_a_day_and_can_be_revoked():
    now = [0.0]
    passes = network.Passes(clock=lambda: now[0])
    passes.grant("browser-a", "access")
    assert passes.holds("browser-a", "access")
    assert not passes.holds("browser-a", "host") and not passes.holds("browser-b", "access")
    assert not passes.holds(None, "access")
    passes.grant(None, "access")                  # no cookie: nothing to remember it by
    assert not passes.holds(None, "access")
    now[0] += network.PASS_HOURS * 3600 + 1
    assert not passes.holds("browser-a", "access")
    passes.grant("browser-a", "host")
    passes.revoke("browser-a", "host")
    assert not passes.holds("browser-a", "host")
