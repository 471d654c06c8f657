"""Status moves: what a status-changing script reports besides its own reply.

A script that changes statuses (``set_status`` and its graph cascades, the dependency
edits) returns every intent it moved, with the portfolios that intent belongs to, because
portfolio aggregates live in other slots: the client passes each move on to the
portfolios' own scripts right away, and the daemon replays the same moves from the bus
when a client died in between. Replays are harmless because a move carries the intent's
version, and a portfolio applies a member's move only when it is newer than what it has.
"""

from __future__ import annotations

import msgspec


class Move(msgspec.Struct, frozen=True, array_like=True):
    """``intent_id`` reached ``status`` at ``version``; it belongs to ``portfolios``."""

    intent_id: str
    status: str
    version: int
    portfolios: list[str] = msgspec.field(default_factory=list)


_MOVES = msgspec.json.Decoder(list[Move])


def decode_moves(text: str | bytes) -> list[Move]:
    """The ``moves`` JSON array a script returns: ``[[id, status, version, [pid, ...]], ...]``."""
    return _MOVES.decode(text)
