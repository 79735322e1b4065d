"""The transition tables themselves: closed, consistent, and role-agnostic."""
import pytest

import caproto as ca
from caproto import _state
from caproto._state import (CHANNEL_TRANSITIONS, CIRCUIT_TRANSITIONS,
                            COMMAND_SENDER, ChannelState, CircuitState,
                            StateRefused)


def test_public_state_names_are_reexported():
    for name in ("SEND_VERSION_REQUEST", "AWAIT_VERSION_RESPONSE", "CONNECTED",
                 "DISCONNECTED", "SEND_CREATE_CHAN_REQUEST",
                 "AWAIT_CREATE_CHAN_RESPONSE", "MUST_CLOSE", "CLOSED",
                 "FAILED", "ChannelState", "CircuitState"):
        assert getattr(ca, name) is getattr(_state, name)
    assert ca.DISCONNECTED is ca._constants.DISCONNECTED
    assert repr(ca.MUST_CLOSE) == "MUST_CLOSE"


def test_tables_are_closed():
    """Every target state has its own row, so no transition leads nowhere."""
    for role, table in CIRCUIT_TRANSITIONS.items():
        for row in table.values():
            assert set(row.values()) <= set(table), role
    for row in CHANNEL_TRANSITIONS.values():
        assert set(row.values()) <= set(CHANNEL_TRANSITIONS)
    assert CHANNEL_TRANSITIONS[ca.CLOSED] == {}
    assert CHANNEL_TRANSITIONS[ca.FAILED] == {}


def test_every_tcp_command_has_exactly_one_sender():
    client_cmds = {c for row in CIRCUIT_TRANSITIONS[ca.CLIENT].values() for c in row}
    server_cmds = {c for row in CIRCUIT_TRANSITIONS[ca.SERVER].values() for c in row}
    assert not client_cmds & server_cmds
    assert all(cls.SENDER is COMMAND_SENDER[cls] for cls in COMMAND_SENDER)
    assert COMMAND_SENDER[ca.ReadNotifyRequest] is ca.CLIENT
    assert COMMAND_SENDER[ca.ErrorResponse] is ca.SERVER
    assert ca.RsrvIsUpResponse not in COMMAND_SENDER          # UDP only


@pytest.mark.parametrize("order", ["client first", "server first"])
def test_handshake_completes_in_either_order(order):
    state = CircuitState()
    steps = [(ca.CLIENT, ca.VersionRequest), (ca.SERVER, ca.VersionResponse)]
    if order == "server first":
        steps.reverse()
    for sender, command in steps:
        state.advance(sender, state.check(sender, command))
    assert state[ca.CLIENT] is ca.CONNECTED and state[ca.SERVER] is ca.CONNECTED


def test_refusal_leaves_circuit_state_unchanged():
    state = CircuitState()
    with pytest.raises(StateRefused, match="SEND_VERSION_REQUEST"):
        state.check(ca.CLIENT, ca.CreateChanRequest)
    with pytest.raises(StateRefused, match="sent only by"):
        state.check(ca.SERVER, ca.VersionRequest)
    assert state[ca.CLIENT] is ca.SEND_VERSION_REQUEST
    state.disconnect()
    with pytest.raises(StateRefused):
        state.check(ca.CLIENT, ca.VersionRequest)


def _walk(*commands):
    state = ChannelState()
    for command in commands:
        state.advance(state.check(command))
    return state


def test_channel_life_and_both_roles_names():
    state = ChannelState()
    assert (state[ca.CLIENT], state[ca.SERVER]) == (ca.SEND_CREATE_CHAN_REQUEST,
                                                    _state.IDLE)
    state = _walk(ca.CreateChanRequest)
    assert state[ca.SERVER] is _state.SEND_CREATE_CHAN_RESPONSE
    state = _walk(ca.CreateChanRequest, ca.AccessRightsResponse,
                  ca.CreateChanResponse, ca.ReadNotifyRequest,
                  ca.ClearChannelRequest, ca.ReadNotifyResponse)
    assert state[ca.CLIENT] is ca.MUST_CLOSE is state[ca.SERVER]
    state.advance(state.check(ca.ClearChannelResponse))
    assert state[ca.CLIENT] is ca.CLOSED and not state.is_open


@pytest.mark.parametrize("history, command", [
    ((), ca.ReadNotifyRequest),                                   # not created
    ((ca.CreateChanRequest,), ca.WriteRequest),                   # not connected
    ((ca.CreateChanRequest, ca.CreateChanResponse,
      ca.ClearChannelRequest), ca.EventAddRequest),               # closing
    ((ca.CreateChanRequest, ca.CreateChFailResponse), ca.CreateChanRequest),
])
def test_channel_refusals(history, command):
    state = _walk(*history)
    before = state.state
    with pytest.raises(StateRefused, match=command.__name__):
        state.check(command)
    assert state.state is before


def test_disconnect_closes_open_channels_but_keeps_failed():
    assert _walk(ca.CreateChanRequest).state is ca.AWAIT_CREATE_CHAN_RESPONSE
    state = _walk(ca.CreateChanRequest)
    state.disconnect()
    assert state.state is ca.CLOSED
    failed = _walk(ca.CreateChanRequest, ca.CreateChFailResponse)
    failed.disconnect()
    assert failed.state is ca.FAILED
