"""lib.ui.links.build_share_link: the link is what the browser used, unless that only works here."""

from lib.ui.links import build_share_link

PARAMS = {"batch_size": "4", "factor": "batch", "values": "1,8"}


def test_network_address_is_kept_as_it_is():
    link = build_share_link("http://192.0.2.2:8501/explore", PARAMS, "192.0.2.2")
    assert link.url == "http://192.0.2.2:8501/explore?batch_size=4&factor=batch&values=1%2C8"
    assert link.note is None and link.this_computer is None
    named = build_share_link("https://class.example.org/ile/explore", PARAMS, "10.0.0.5")
    assert named.url.startswith("https://class.example.org/ile/explore?")


def test_loopback_is_replaced_by_the_network_address_with_the_reason():
    for host in ("localhost", "127.0.0.1", "[::1]"):
        link = build_share_link(f"http://{host}:8501/explore", PARAMS, "192.0.2.2")
        assert link.url == "http://192.0.2.2:8501/explore?batch_size=4&factor=batch&values=1%2C8"
        assert "their own computer" in link.note
        assert link.this_computer.startswith(f"http://{host}:8501/explore?")


def test_ipv6_network_address_gets_brackets_and_same_port():
    link = build_share_link("http://localhost:9000/", {}, "fd00::2")
    assert link.url == "http://[fd00::2]:9000/"


def test_no_network_or_loopback_only_server_is_explained():
    alone = build_share_link("http://localhost:8501/", PARAMS, None)
    assert alone.url.startswith("http://localhost:8501/?") and "works only here" in alone.note
    local = build_share_link("http://localhost:8501/", PARAMS, "192.0.2.2",
                             listens_on_loopback_only=True)
    assert "--server.address 0.0.0.0" in local.note


def test_no_browser_address_gives_a_relative_link():
    assert build_share_link("", {"a": "1"}, "192.0.2.2").url == "?a=1"


def test_a_link_may_name_hardware_profiles_for_the_device_factor():
    import pytest

    from lib.measure.factors import FACTORS
    from lib.core.errors import ExplorerError
    from lib.ui import links
    device = FACTORS["device"]
    assert links._factor_values(device, "cpu, h200,tpu-v6e", False) == ["cpu", "h200", "tpu-v6e"]
    with pytest.raises(ExplorerError, match="h300 can't be used: choose from cpu"):
        links._factor_values(device, "cpu,h300", False)


def test_a_link_written_before_a_factor_was_renamed_still_names_it():
    from lib.measure.factors import FACTORS, current_name, get_factor
    assert current_name("prompt") == "prompt_tokens" and "prompt" not in FACTORS
    assert get_factor("prompt") is FACTORS["prompt_tokens"]
