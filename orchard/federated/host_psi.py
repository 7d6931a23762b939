"""The host's side of a session's PSI (ECDH): blind both id sets, then take the guest's matched positions.

The host blinds the ids of its whole table, or of one period's rows in a period-scoped scoring session, sent
in a shuffled order; the guest may present at most the session's limit of ids and can match no more rows
than it presented.
"""

from __future__ import annotations

import numpy as np

from orchard.errors import OrchardError
from orchard.federated.channel import Message
from orchard.federated.host_sessions import HostData, HostSession
from orchard.federated.psi_ecdh import Blinder, shuffled


def psi_blind(session: HostSession, message: Message, data: HostData) -> Message:
    """Blind the guest's blinded ids again and send the host's own blinded ids (once per session)."""
    if session.blinder is not None:
        raise OrchardError("one PSI per session")
    guest = np.asarray(message.arrays["blinded"])
    if len(guest) > session.max_ids:
        raise OrchardError(f"PSI of {len(guest)} ids is over this session's limit of {session.max_ids}")
    rows = np.arange(len(data.keys)) if session.period is None else data.period_rows(session.period)
    session.blinder = Blinder()
    with session.blinder:  # both of the host's passes are here: its worker process (if any) stops after them
        try:
            double = session.blinder.blind_points(guest)
        except ValueError as exc:
            raise OrchardError(f"PSI input rejected: {exc}") from exc
        session.shuffle = rows[shuffled(len(rows))]  # host table rows, in the order they are sent
        own = session.blinder.blind_ids(data.keys[i] for i in session.shuffle.tolist())
    session.max_ids = len(guest)  # the matched rows can never outnumber the ids presented
    return Message("psi_blind", arrays={"double": double, "host_blinded": own})


def psi_result(session: HostSession, message: Message) -> Message:
    """Take the positions (in the order the host sent) of the host's rows the guest matched: the intersection."""
    positions = np.asarray(message.arrays["host_positions"], dtype=np.int64)
    if session.shuffle is None or session.aligned is not None:
        raise OrchardError("PSI result without a PSI, or a second one")
    if positions.ndim != 1 or len(positions) > session.max_ids or len(np.unique(positions)) != len(positions):
        raise OrchardError("PSI result must list distinct rows, no more than the ids presented")
    if positions.size and (positions.min() < 0 or positions.max() >= len(session.shuffle)):
        raise OrchardError("PSI result refers to rows the host did not send")
    session.aligned = session.shuffle[positions]
    return Message("psi_result", fields={"rows": len(positions)})
