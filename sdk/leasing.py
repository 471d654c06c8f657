"""``lease()``: hold a lease for the length of a block, renewed in the background.

The two flavours differ in what they can do when a renewal fails, so they are written by
hand rather than generated: the async one cancels the block (it runs inside the keeper's
task group); the sync one cannot interrupt a thread, so guarded writes made in the block
fail on their own (the scripts refuse an expired or revoked lease) and the exit raises.
Either way the holder is told with LeaseLostError; nothing goes on silently.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import TYPE_CHECKING

import anyio

from oibus.bus.errors import LeaseConflictError, LeaseLostError, OpenIntentError
from oibus.bus.models import Lease

if TYPE_CHECKING:
    from oibus.sdk._async.leases import AsyncLeasesMixin
    from oibus.sdk._sync.leases import LeasesMixin


@asynccontextmanager
async def unwrapped() -> AsyncIterator[None]:
    """The keeper's task group wraps what the block raises in an ExceptionGroup; the
    block's own exception is what its caller expects to catch."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


def _lost(lease: Lease, cause: BaseException) -> LeaseLostError:
    return LeaseLostError(
        f"lease {lease.id} on {lease.scope} of intent {lease.intent_id} could not be "
        f"renewed: {cause}",
        holder=lease.agent_id,
        scope=lease.scope,
    )


@asynccontextmanager
async def hold_lease_async(
    client: AsyncLeasesMixin, intent_id: str, scope: str, duration_seconds: float
) -> AsyncIterator[Lease]:
    lease = await client.acquire_lease(intent_id, scope, duration_seconds)
    lost: list[OpenIntentError] = []
    try:
        async with unwrapped(), anyio.create_task_group() as tg:

            async def keep_renewed() -> None:
                while True:
                    await anyio.sleep(duration_seconds / 3)
                    try:
                        await client.renew_lease(intent_id, lease.id, duration_seconds)
                    except OpenIntentError as exc:
                        lost.append(exc)
                        tg.cancel_scope.cancel()  # the block runs in this scope too
                        return

            tg.start_soon(keep_renewed)
            try:
                yield lease
            finally:
                tg.cancel_scope.cancel()
    finally:
        if not lost:
            # it may have expired or been revoked meanwhile: then nothing is left to release
            with anyio.CancelScope(shield=True), suppress(LeaseConflictError):
                await client.release_lease(intent_id, lease.id)
    if lost:
        raise _lost(lease, lost[0]) from lost[0]


@contextmanager
def hold_lease(
    client: LeasesMixin, intent_id: str, scope: str, duration_seconds: float
) -> Iterator[Lease]:
    lease = client.acquire_lease(intent_id, scope, duration_seconds)
    stop = threading.Event()
    lost: list[OpenIntentError] = []

    def keep_renewed() -> None:
        while not stop.wait(duration_seconds / 3):
            try:
                client.renew_lease(intent_id, lease.id, duration_seconds)
            except OpenIntentError as exc:
                lost.append(exc)
                return

    keeper = threading.Thread(target=keep_renewed, name=f"oibus-lease-{lease.id}", daemon=True)
    keeper.start()
    try:
        yield lease
    finally:
        stop.set()
        keeper.join()
        if not lost:
            with suppress(LeaseConflictError):
                client.release_lease(intent_id, lease.id)
    if lost:
        raise _lost(lease, lost[0]) from lost[0]
