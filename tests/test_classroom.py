"""lib.access.classroom: who owns a session, who is the host, who sees and changes what, one run each."""

import threading

import pytest

from lib.access import classroom
from lib.access.classroom import ClassroomError, RunTurns


def test_enabled_only_when_asked():
    assert not classroom.enabled({})
    assert classroom.enabled({"ILE_CLASSROOM": "1"}) and classroom.enabled({"ILE_CLASSROOM": "yes"})
    assert not classroom.enabled({"ILE_CLASSROOM": "0"})


@pytest.mark.parametrize("address, loopback", [
    (None, True), ("127.0.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("127.0.1.1", True), ("192.0.2.2", False), ("fd00::2", False), ("vm", False)])
def test_loopback(address, loopback):
    assert classroom.is_loopback(address) is loopback


def test_owner_is_one_way_stable_per_browser_and_distinct():
    cookie = "2|aabbccdd|00112233445566778899aabbccddeeff|1700000000"
    owner = classroom.owner_id(cookie, "session-1")
    assert owner == classroom.owner_id(cookie, "session-2")      # two tabs, one browser
    assert "00112233" not in owner and len(owner) == 16
    # Tornado may write the same token with another mask: still the same person.
    mask, masked = bytes.fromhex("aabbccdd"), bytes.fromhex("00112233445566778899aabbccddeeff")
    token = bytes(m ^ mask[i % 4] for i, m in enumerate(masked))
    other_mask = bytes.fromhex("01020304")
    remasked = bytes(t ^ other_mask[i % 4] for i, t in enumerate(token)).hex()
    assert classroom.owner_id(f"2|01020304|{remasked}|1700000001", None) == owner
    assert classroom.owner_id("another-cookie", None) != owner
    assert classroom.owner_id(None, "session-1") != classroom.owner_id(None, "session-2")


def test_viewers_in_and_out_of_classroom():
    off = classroom.viewer("cookie", "s", False, environ={})
    assert off.is_host and off.owner is None and not off.classroom
    on = {"ILE_CLASSROOM": "1"}
    student = classroom.viewer("cookie", "s", False, environ=on)
    host = classroom.viewer("teacher", "t", True, environ=on)   # entered the host code
    assert student.classroom and not student.is_host and host.is_host
    mine = {"owner": student.owner, "shared": False}
    theirs = {"owner": "someone-else", "shared": False}
    shared = {"owner": "someone-else", "shared": True}
    legacy = {"owner": None, "shared": False}
    assert [student.can_see(e) for e in (mine, theirs, shared, legacy)] == [True, False, True, False]
    assert [student.can_edit(e) for e in (mine, theirs, shared, legacy)] == [True, False, False, False]
    assert all(host.can_see(e) and host.can_edit(e) for e in (mine, theirs, shared, legacy))
    assert student.whose(mine) == "you" and student.whose(shared) == "another visitor (shared)"


def test_only_catalog_models_in_class():
    classroom.check_models(["gpt2", "smollm2-135m-instruct"], "This link")
    with pytest.raises(ClassroomError, match=r"This file uses a model .*\(/home/x/model\)"):
        classroom.check_models(["gpt2", "/home/x/model"], "This file")


def test_one_run_per_owner_others_go_on():
    turns = RunTurns()
    with turns.turn("alice", "a run of gpt2"):
        assert turns.active("alice") == "a run of gpt2"
        with pytest.raises(ClassroomError, match="already have a run waiting or running"):
            with turns.turn("alice", "another"):
                pass
        with turns.turn("bob", "his run"):          # another visitor is not blocked
            pass
        with turns.turn(None, "no owner: no limit"):
            pass
    assert turns.active("alice") is None
    with pytest.raises(RuntimeError):                # a failed run gives the turn back
        with turns.turn("alice", "fails"):
            raise RuntimeError("boom")
    assert turns.active("alice") is None


def test_turns_are_thread_safe():
    turns, granted, start = RunTurns(), [], threading.Barrier(8)

    def press():
        start.wait()
        try:
            with turns.turn("alice", "x"):
                granted.append(1)
                start_done.wait()
        except ClassroomError:
            pass
    start_done = threading.Event()
    threads = [threading.Thread(target=press) for _ in range(8)]
    for t in threads:
        t.start()
    import time
    time.sleep(0.2)
    start_done.set()
    for t in threads:
        t.join(5)
    assert granted == [1]
