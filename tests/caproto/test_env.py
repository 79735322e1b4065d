"""EPICS_CA*/EPICS_CAS* parsing: defaults, fallbacks, lists and bad values.

Every call passes its own mapping, so nothing depends on the test session's
environment (which conftest pins to loopback).
"""
import pytest

import caproto as ca
from caproto._env import (get_beacon_address_list, get_client_address_list,
                          get_name_server_list, get_server_ignore_list,
                          parse_address_list)


def test_defaults_match_epics_base():
    env = ca.get_environment_variables({})
    assert env["EPICS_CA_SERVER_PORT"] == 5064
    assert env["EPICS_CA_REPEATER_PORT"] == 5065
    assert env["EPICS_CA_AUTO_ADDR_LIST"] == "YES"
    assert env["EPICS_CA_ADDR_LIST"] == ""
    assert env["EPICS_CA_CONN_TMO"] == 30.0
    assert env["EPICS_CA_BEACON_PERIOD"] == 15.0
    assert env["EPICS_CA_MAX_SEARCH_PERIOD"] == 300.0
    assert env["EPICS_CA_MAX_ARRAY_BYTES"] == 16384
    assert env["EPICS_CAS_SERVER_PORT"] == 5064
    assert env["EPICS_CAS_BEACON_PORT"] == 5065
    assert env["EPICS_CAS_BEACON_PERIOD"] == 15.0
    assert env["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "YES"
    assert env["EPICS_CAS_INTF_ADDR_LIST"] == ""


def test_cas_variables_fall_back_to_ca_ones():
    env = ca.get_environment_variables({
        "EPICS_CA_SERVER_PORT": "6064", "EPICS_CA_REPEATER_PORT": "6065",
        "EPICS_CA_BEACON_PERIOD": "2.5", "EPICS_CA_ADDR_LIST": "10.1.1.255",
        "EPICS_CA_AUTO_ADDR_LIST": "no"})
    assert env["EPICS_CAS_SERVER_PORT"] == 6064
    assert env["EPICS_CAS_BEACON_PORT"] == 6065
    assert env["EPICS_CAS_BEACON_PERIOD"] == 2.5
    assert env["EPICS_CAS_BEACON_ADDR_LIST"] == "10.1.1.255"
    assert env["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "NO"
    own = ca.get_environment_variables({"EPICS_CA_SERVER_PORT": "6064",
                                        "EPICS_CAS_SERVER_PORT": "7064"})
    assert (own["EPICS_CA_SERVER_PORT"], own["EPICS_CAS_SERVER_PORT"]) == (6064, 7064)


def test_empty_value_means_unset():
    env = ca.get_environment_variables({"EPICS_CA_SERVER_PORT": "",
                                        "EPICS_CAS_BEACON_PORT": "  "})
    assert env["EPICS_CA_SERVER_PORT"] == 5064
    assert env["EPICS_CAS_BEACON_PORT"] == 5065


def test_search_period_is_clamped_like_libca():
    env = ca.get_environment_variables({"EPICS_CA_MAX_SEARCH_PERIOD": "5"})
    assert env["EPICS_CA_MAX_SEARCH_PERIOD"] == 60.0


@pytest.mark.parametrize("name, value", [
    ("EPICS_CA_CONN_TMO", "abc"),
    ("EPICS_CA_CONN_TMO", "-1"),
    ("EPICS_CA_SERVER_PORT", "http"),
    ("EPICS_CA_SERVER_PORT", "70000"),
    ("EPICS_CAS_BEACON_PORT", "80"),
    ("EPICS_CA_MAX_ARRAY_BYTES", "1.5e6"),
    ("EPICS_CA_AUTO_ADDR_LIST", "maybe"),
    ("EPICS_CAS_BEACON_PERIOD", "soon"),
])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ca.CaprotoValueError, match=name):
        ca.get_environment_variables({name: value})


def test_address_list_parsing():
    assert parse_address_list(" 10.0.0.1  host.example:6000\t10.0.0.1 ", 5064) == [
        ("10.0.0.1", 5064), ("host.example", 6000)]
    with pytest.raises(ca.CaprotoValueError, match="EPICS_CA_ADDR_LIST.*h:x"):
        get_client_address_list({"EPICS_CA_ADDR_LIST": "h:x"})
    with pytest.raises(ca.CaprotoValueError, match="no host"):
        parse_address_list(":5064", 5064, "EPICS_CA_ADDR_LIST")


def test_client_address_list_explicit_plus_auto():
    env = {"EPICS_CA_ADDR_LIST": "10.0.0.1 10.0.0.2:6000",
           "EPICS_CA_SERVER_PORT": "5070"}
    assert get_client_address_list(env, auto_addresses=["192.168.1.255"]) == [
        ("10.0.0.1", 5070), ("10.0.0.2", 6000), ("192.168.1.255", 5070)]
    env["EPICS_CA_AUTO_ADDR_LIST"] = "NO"
    assert get_client_address_list(env) == [("10.0.0.1", 5070), ("10.0.0.2", 6000)]
    assert ca.get_address_list(env) == ["10.0.0.1", "10.0.0.2:6000"]
    assert ca.get_address_list({}) == ["255.255.255.255"]


def test_server_address_list():
    assert ca.get_server_address_list({}) == ["0.0.0.0"]
    assert ca.get_server_address_list(
        {"EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1 10.0.0.5"}) == ["127.0.0.1", "10.0.0.5"]
    with pytest.raises(ca.CaprotoValueError, match="EPICS_CAS_SERVER_PORT"):
        ca.get_server_address_list({"EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1:6000"})


def test_beacon_address_list_fallbacks():
    env = {"EPICS_CA_ADDR_LIST": "10.0.0.255", "EPICS_CA_AUTO_ADDR_LIST": "NO",
           "EPICS_CA_REPEATER_PORT": "6065"}
    assert get_beacon_address_list(env) == [("10.0.0.255", 6065)]
    env.update(EPICS_CAS_BEACON_ADDR_LIST="127.255.255.255:7000",
               EPICS_CAS_AUTO_BEACON_ADDR_LIST="YES", EPICS_CAS_BEACON_PORT="7065")
    assert get_beacon_address_list(env, auto_addresses=["10.9.9.255"]) == [
        ("127.255.255.255", 7000), ("10.9.9.255", 7065)]
    with pytest.raises(ca.CaprotoValueError, match="EPICS_CAS_BEACON_ADDR_LIST"):
        get_beacon_address_list({"EPICS_CAS_BEACON_ADDR_LIST": "h:0"})


def test_name_servers_and_ignore_list():
    env = {"EPICS_CA_NAME_SERVERS": "ns1 ns2:6000",
           "EPICS_CAS_IGNORE_ADDR_LIST": "10.0.0.7 10.0.0.8"}
    assert get_name_server_list(env) == [("ns1", 5064), ("ns2", 6000)]
    assert get_server_ignore_list(env) == ["10.0.0.7", "10.0.0.8"]
