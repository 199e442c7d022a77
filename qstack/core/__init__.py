"""Layer-neutral ground every layer stands on: the protocol interface
(events in, actions out), the wire-message codec and the error codes.

It imports no layer and no driver, so any layer may import it.
"""
from qstack.core.errors import ConfigError, DecodeError, EncodeError, ErrorCode, QStackError
from qstack.core.messages import Message, decode, encode, limits, message
from qstack.core.protocol import (
    Action, CancelTimer, Deliver, Event, Fail, MessageReceived, OperationDone, PeerDown,
    Protocol, QuantumOp, SendMessage, Started, StartTimer, Submit, TimerFired, on,
)

__all__ = [
    "ConfigError", "DecodeError", "EncodeError", "ErrorCode", "QStackError",
    "Message", "decode", "encode", "limits", "message",
    "Action", "CancelTimer", "Deliver", "Event", "Fail", "MessageReceived", "OperationDone",
    "PeerDown", "Protocol", "QuantumOp", "SendMessage", "Started", "StartTimer", "Submit",
    "TimerFired", "on",
]
