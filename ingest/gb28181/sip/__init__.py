"""A SIP stack of our own on asyncio, for GB/T 28181 (see docs/gb28181.md for why).

One module per job: ``message`` (parse/serialise, bounded and lenient), ``digest``
(MD5 digest, both sides), ``transport`` (UDP + TCP), ``transaction`` (client/server,
T1/T2 retransmission), ``dialog`` (INVITE dialogs) and ``endpoint`` (``SipEndpoint``:
handlers for incoming requests, ``request``/``invite`` for outgoing ones). Start with
``endpoint``'s docstring.
"""

from ingest.gb28181.sip.dialog import Dialog
from ingest.gb28181.sip.endpoint import Credentials, Incoming, InviteResult, SipEndpoint
from ingest.gb28181.sip.message import SipParseError, SipRequest, SipResponse, response_to
from ingest.gb28181.sip.transaction import Timers
from ingest.gb28181.sip.transport import Peer

__all__ = ["Credentials", "Dialog", "Incoming", "InviteResult", "Peer", "SipEndpoint", "SipParseError",
           "SipRequest", "SipResponse", "Timers", "response_to"]
