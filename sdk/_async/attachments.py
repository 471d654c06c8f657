"""Attachments (RFC-0005) on the async client: add (inline base64 or by storage URL), list,
read inline content, delete."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, cast

from oibus.bus import attachments as att
from oibus.bus.attachments import Attachment
from oibus.bus.errors import NotFoundError
from oibus.bus.keyspace import check_id
from oibus.sdk._async.base import AsyncClientBase


class AsyncAttachmentsMixin(AsyncClientBase):
    async def add_attachment(
        self,
        intent_id: str,
        filename: str,
        content_type: str | None = None,
        content_base64: str | bytes | None = None,
        storage_url: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        mime_type: str | None = None,
        size: int | None = None,
    ) -> Attachment:
        """Attach a file: exactly one of ``content_base64`` (inline, at most 1 MiB of
        base64 text; its size is computed) or ``storage_url`` (a reference; ``size`` is
        yours to give). ``content_type`` and ``mime_type`` are the same thing (seed and
        RFC names; default application/octet-stream). ``metadata`` takes RFC-0005's
        width, height, duration, pages, encoding, frame_rate and any other keys. Oversize
        content raises PayloadTooLargeError and nothing is stored."""
        call = att.add_attachment(
            self.keyspace,
            self._ops.actor,
            intent_id,
            str(uuid.uuid4()),
            filename=filename,
            content_type=content_type,
            content_base64=content_base64,
            storage_url=storage_url,
            description=description,
            metadata=metadata,
            mime_type=mime_type,
            size=size,
        )
        return att.decode_attachment(await self._run(call), intent_id)

    async def get_attachments(self, intent_id: str) -> list[Attachment]:
        """The intent's attachments (metadata only), oldest first."""
        check_id(intent_id)
        raw, exists = await self._runner.commands(
            [
                ("HGETALL", self.keyspace.attachments(intent_id)),
                ("EXISTS", self.keyspace.intent(intent_id)),
            ]
        )
        if not exists:
            raise NotFoundError(f"intent {intent_id} does not exist", id=intent_id)
        found = [att.decode_attachment(t, intent_id) for t in cast(dict[str, str], raw).values()]
        found.sort(key=lambda a: (a.created_at, a.id))
        return found

    async def get_attachment_content(self, intent_id: str, attachment_id: str) -> bytes:
        """The bytes of an inline attachment. NotFoundError for an unknown intent or
        attachment, and for one stored by reference (read its ``storage_url`` instead)."""
        check_id(intent_id)
        check_id(attachment_id, "attachment_id")
        content, meta, exists = await self._runner.commands(
            [
                ("HGET", self.keyspace.attachment_content(intent_id), attachment_id),
                ("HGET", self.keyspace.attachments(intent_id), attachment_id),
                ("EXISTS", self.keyspace.intent(intent_id)),
            ]
        )
        if not exists:
            raise NotFoundError(f"intent {intent_id} does not exist", id=intent_id)
        if meta is None:
            raise NotFoundError(
                f"intent {intent_id} has no attachment {attachment_id}",
                resource="attachment",
                id=attachment_id,
            )
        if content is None:
            raise NotFoundError(
                f"attachment {attachment_id} is stored at its storage_url, not inline",
                resource="attachment_content",
                id=attachment_id,
            )
        return att.decode_content(content, intent_id, attachment_id)

    async def delete_attachment(self, intent_id: str, attachment_id: str) -> Attachment:
        """Remove an attachment of this intent (metadata and content); returns what was
        removed. NotFoundError if the intent has no such attachment (also when the id is
        another intent's)."""
        call = att.delete_attachment(self.keyspace, self._ops.actor, intent_id, attachment_id)
        return att.decode_attachment(await self._run(call), intent_id)
