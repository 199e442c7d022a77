"""Link layer: heralded entanglement between neighbours and the entanglement
generation protocol (EGP). See ``specs/link.md``."""
from qstack.link.egp import EGP, Release
from qstack.link.schemes import (
    DoubleClickModel, MidpointSourceModel, SenderReceiverModel, SingleClickModel,
)
from qstack.link.service import (
    CancelCreate, CreateRequest, CreateTopUp, EntanglementId, LinkErr, LinkExpire, LinkOk, RequestType,
)

__all__ = ["EGP", "Release", "SingleClickModel", "DoubleClickModel", "MidpointSourceModel",
           "SenderReceiverModel", "CreateRequest", "EntanglementId", "LinkErr", "LinkExpire",
           "LinkOk", "RequestType", "CancelCreate", "CreateTopUp"]
