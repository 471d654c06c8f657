"""Attachments (RFC-0005): inline base64 content (bounded, size computed) or a storage URL,
RFC-0005 metadata, listing without content, deletion scoped to the intent. Every refused
call leaves the store as it was."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import redis

from oibus import (
    AlreadyExistsError,
    AsyncClient,
    Client,
    IntentClosedError,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from oibus.bus import attachments as att
from oibus.bus import limits
from oibus.bus.attachments import Attachment
from oibus.bus.keyspace import Keyspace
from oibus.bus.ops import Call
from oibus.bus.registry import default_registry
from oibus.sdk._async.runner import check_one_slot

LUA = Path(__file__).resolve().parent.parent / "lua"
PDF = b"%PDF-1.7 quarterly analysis \x00\xff\x10"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _footprint(client: Client, raw: redis.Redis, intent_id: str) -> tuple[Any, ...]:
    ks = client.keyspace
    return (
        raw.xlen(ks.events(intent_id)),
        raw.hgetall(ks.attachments(intent_id)),
        raw.hgetall(ks.attachment_content(intent_id)),
        raw.hget(ks.intent(intent_id), "version"),
    )


def _add(client: Client, intent_id: str, **kwargs: Any) -> Attachment:
    args: dict[str, Any] = {"filename": "f.bin", "content_base64": b64(b"data")}
    args.update(kwargs)
    return client.add_attachment(intent_id, **args)


# -- the scripts' contract ---------------------------------------------------------------
def test_calls_send_what_the_headers_declare_in_one_slot() -> None:
    ks, reg = Keyspace("k", 8), default_registry()
    common: dict[str, Any] = {
        "filename": "f",
        "content_type": None,
        "description": "d",
        "metadata": {"pages": 1},
        "mime_type": None,
        "size": None,
    }
    calls = [
        att.add_attachment(ks, "a", "g.i", "x1", content_base64="AAAA", storage_url=None, **common),
        att.add_attachment(
            ks, "a", "g.i", "x2", content_base64=None, storage_url="s3://b/k", **common
        ),
        att.delete_attachment(ks, "a", "g.i", "x1"),
    ]
    for call in calls:
        header = reg[call.script].header
        assert not header.variadic_keys
        assert len(call.keys) == len(header.keys), call.script
        assert len(call.args) == len(header.argv), call.script
        check_one_slot(call)


def test_lua_and_python_share_the_attachment_limits() -> None:
    text = (LUA / "includes" / "att_checks.lua").read_text()
    found = {m[0]: int(m[1]) for m in re.findall(r"local (ATT_\w+) = (\d+)", text)}
    assert found == {"ATT_PER_INTENT": att.ATTACHMENTS_PER_INTENT, "ATT_URL_BYTES": att.URL_BYTES}


# -- add, list, read, delete ---------------------------------------------------------------
def test_inline_attachment_as_the_seed_does(client: Client) -> None:
    intent = client.create_intent("t")
    attachment = client.add_attachment(
        intent.id,
        filename="quarterly_analysis.pdf",
        content_type="application/pdf",
        content_base64=b64(PDF),
        description="Q4 financial analysis report",
    )
    assert isinstance(attachment, Attachment)
    assert (attachment.intent_id, attachment.filename, attachment.uploaded_by) == (
        intent.id,
        "quarterly_analysis.pdf",
        "tester",
    )
    assert attachment.mime_type == attachment.content_type == "application/pdf"
    assert (attachment.size, attachment.storage_url, attachment.inline) == (len(PDF), None, True)
    assert attachment.description == "Q4 financial analysis report"
    assert client.get_attachments(intent.id) == [attachment]
    assert client.get_attachment_content(intent.id, attachment.id) == PDF
    event = client.get_events(intent.id, event_type="attachment_added")[0]
    assert event.payload == {
        "attachment_id": attachment.id,
        "filename": "quarterly_analysis.pdf",
        "mime_type": "application/pdf",
        "size": len(PDF),
        "storage_url": None,
    }
    removed = client.delete_attachment(intent.id, attachment.id)
    assert removed == attachment
    assert client.get_attachments(intent.id) == []
    with pytest.raises(NotFoundError):
        client.get_attachment_content(intent.id, attachment.id)
    deleted = client.get_events(intent.id, event_type="attachment_deleted")[0]
    assert deleted.payload == {"attachment_id": attachment.id, "filename": "quarterly_analysis.pdf"}
    assert client.get_intent(intent.id).version == 1  # attachments are not state


def test_reference_attachment_with_rfc_metadata(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    metadata = {"width": 1920, "height": 1080, "duration": None, "pages": None, "camera": "x"}
    attachment = client.add_attachment(
        intent.id,
        "receipt.jpg",
        storage_url="https://storage.example.com/receipts/r123.jpg",
        metadata=metadata,
        mime_type="image/jpeg",
        size=245000,
    )
    assert (attachment.mime_type, attachment.size, attachment.inline) == (
        "image/jpeg",
        245000,
        False,
    )
    assert attachment.storage_url == "https://storage.example.com/receipts/r123.jpg"
    assert attachment.metadata == metadata
    assert raw_redis.hlen(client.keyspace.attachment_content(intent.id)) == 0
    with pytest.raises(NotFoundError) as info:
        client.get_attachment_content(intent.id, attachment.id)
    assert info.value.resource == "attachment_content"
    unsized = client.add_attachment(intent.id, "clip.mp4", storage_url="s3://bucket/clip.mp4")
    assert (unsized.size, unsized.mime_type) == (None, "application/octet-stream")
    audio = client.add_attachment(
        intent.id,
        "a.wav",
        "audio/wav",
        storage_url="gs://b/a.wav",
        metadata={"duration": 12.5, "encoding": "pcm_s16le", "frame_rate": 44100},
    )
    assert audio.metadata["duration"] == 12.5
    assert [a.id for a in client.get_attachments(intent.id)] == [
        attachment.id,
        unsized.id,
        audio.id,
    ]


def test_size_is_computed_from_the_content(client: Client) -> None:
    intent = client.create_intent("t")
    for data in (b"", b"a", b"ab", b"abc", b"abcd", bytes(range(256)) * 3):
        attachment = _add(client, intent.id, content_base64=b64(data))
        assert attachment.size == len(data)
        assert client.get_attachment_content(intent.id, attachment.id) == data
    assert _add(client, intent.id, content_base64=b64(b"xyz"), size=3).size == 3
    with pytest.raises(ValidationError):
        _add(client, intent.id, content_base64=b64(b"xyz"), size=4)


def test_content_up_to_the_limit_and_not_past_it(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    largest = b"\x07" * (limits.ATTACHMENT_BYTES // 4 * 3)  # exactly the limit in base64
    assert len(b64(largest)) == limits.ATTACHMENT_BYTES
    attachment = _add(client, intent.id, content_base64=b64(largest))
    assert client.get_attachment_content(intent.id, attachment.id) == largest
    before = _footprint(client, raw_redis, intent.id)
    over = b64(largest + b"\x07")
    with pytest.raises(PayloadTooLargeError) as info:
        _add(client, intent.id, content_base64=over)
    assert info.value.details["limit"] == limits.ATTACHMENT_BYTES
    call = att.add_attachment(
        client.keyspace,
        "tester",
        intent.id,
        "big",
        filename="f",
        content_type=None,
        content_base64="AAAA",
        storage_url=None,
        description=None,
        metadata=None,
        mime_type=None,
        size=None,
    )
    args = list(call.args)
    args[5] = over
    with pytest.raises(PayloadTooLargeError):  # the script enforces it too
        client._runner.call(Call("add_attachment", call.keys, args))
    assert _footprint(client, raw_redis, intent.id) == before


@pytest.mark.parametrize(
    "content",
    [
        "not base64!",
        "abc",
        "ab=c",
        "a===",
        "====",
        "YWJj\n",
        "YW Jj",
        "YWJjZA=",
        "éé==",
        b"\xff\xfe",
    ],
)
def test_bad_base64_is_refused_by_the_sdk_and_the_script(
    client: Client, raw_redis: redis.Redis, content: str | bytes
) -> None:
    intent = client.create_intent("t")
    before = _footprint(client, raw_redis, intent.id)
    with pytest.raises(ValidationError):
        _add(client, intent.id, content_base64=content)
    if isinstance(content, str):
        call = att.add_attachment(
            client.keyspace,
            "tester",
            intent.id,
            "x",
            filename="f",
            content_type=None,
            content_base64="",
            storage_url=None,
            description=None,
            metadata=None,
            mime_type=None,
            size=None,
        )
        args = list(call.args)
        args[5] = content
        with pytest.raises(ValidationError):
            client._runner.call(Call("add_attachment", call.keys, args))
    assert _footprint(client, raw_redis, intent.id) == before


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"content_base64": None}, ValidationError),  # neither content nor url
        ({"storage_url": "https://x.example/f"}, ValidationError),  # both
        ({"content_base64": None, "storage_url": "not a url"}, ValidationError),
        ({"content_base64": None, "storage_url": "https://a b"}, ValidationError),
        ({"content_base64": None, "storage_url": "https://x/" + "a" * 2048}, PayloadTooLargeError),
        ({"content_base64": None, "storage_url": ""}, ValidationError),
        ({"content_base64": 12}, ValidationError),
        ({"filename": ""}, ValidationError),
        ({"filename": "a\nb"}, ValidationError),
        ({"filename": "x" * (limits.TITLE_BYTES + 1)}, PayloadTooLargeError),
        ({"content_type": "pdf"}, ValidationError),
        ({"content_type": "text/plain", "mime_type": "text/html"}, ValidationError),
        ({"mime_type": "a/b c"}, ValidationError),
        ({"size": -1}, ValidationError),
        ({"size": True}, ValidationError),
        ({"size": 10**15, "content_base64": None, "storage_url": "s3://b/k"}, ValidationError),
        ({"description": ""}, ValidationError),
        ({"metadata": ["pages", 3]}, ValidationError),
        ({"metadata": {"width": -1}}, ValidationError),
        ({"metadata": {"height": 10.5}}, ValidationError),
        ({"metadata": {"pages": "24"}}, ValidationError),
        ({"metadata": {"duration": "long"}}, ValidationError),
        ({"metadata": {"frame_rate": True}}, ValidationError),
        ({"metadata": {"encoding": 16}}, ValidationError),
        ({"metadata": {"blob": "x" * limits.TEXT_BYTES}}, PayloadTooLargeError),
        ({"intent_id": "ghost"}, NotFoundError),
        ({"intent_id": "bad id!"}, ValidationError),
    ],
)
def test_add_input_errors_change_nothing(
    client: Client, raw_redis: redis.Redis, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    intent = client.create_intent("t")
    existing = _add(client, intent.id)
    args: dict[str, Any] = {
        "intent_id": intent.id,
        "filename": "f.bin",
        "content_base64": b64(b"data"),
    }
    args.update(kwargs)
    before = _footprint(client, raw_redis, intent.id)
    with pytest.raises(error):
        client.add_attachment(**args)
    assert _footprint(client, raw_redis, intent.id) == before
    assert client.get_attachments(intent.id) == [existing]


def test_the_add_script_checks_its_input(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    call = att.add_attachment(
        client.keyspace,
        "tester",
        intent.id,
        "a1",
        filename="f",
        content_type=None,
        content_base64="AAAA",
        storage_url=None,
        description=None,
        metadata=None,
        mime_type=None,
        size=None,
    )
    client._runner.call(call)
    before = _footprint(client, raw_redis, intent.id)
    with pytest.raises(AlreadyExistsError):  # an id is never overwritten
        client._runner.call(call)
    for n, bad in [
        (4, "both"),  # source
        (6, "https://x.example/f"),  # inline content and a url
        (7, "4"),  # size that does not match the content
        (7, "-3"),
        (3, "pdf"),
        (2, "a\x01b"),
        (9, '{"width":-1}'),
        (9, '{"pages":2.5}'),
        (9, "[]"),
        (8, "x" * (limits.TEXT_BYTES + 1)),
    ]:
        args = list(call.args)
        args[1], args[n] = "a2", bad
        with pytest.raises(ValidationError):
            client._runner.call(Call("add_attachment", call.keys, args))
    url_args = list(call.args)
    url_args[1], url_args[4], url_args[6] = "a3", "url", "https://x.example/f"
    with pytest.raises(ValidationError):  # url source with inline content too
        client._runner.call(Call("add_attachment", call.keys, url_args))
    assert _footprint(client, raw_redis, intent.id) == before


def test_delete_only_this_intents_attachment(client: Client, raw_redis: redis.Redis) -> None:
    mine, theirs = client.create_intent("mine"), client.create_intent("theirs")
    attachment = _add(client, theirs.id)
    before = _footprint(client, raw_redis, theirs.id)
    with pytest.raises(NotFoundError) as info:
        client.delete_attachment(mine.id, attachment.id)
    assert info.value.resource == "attachment"
    with pytest.raises(NotFoundError):
        client.get_attachment_content(mine.id, attachment.id)
    assert _footprint(client, raw_redis, theirs.id) == before
    with pytest.raises(NotFoundError):
        client.delete_attachment("ghost", attachment.id)
    with pytest.raises(ValidationError):
        client.delete_attachment(theirs.id, "bad id!")
    client.delete_attachment(theirs.id, attachment.id)
    assert raw_redis.hlen(client.keyspace.attachment_content(theirs.id)) == 0
    with pytest.raises(NotFoundError):  # twice
        client.delete_attachment(theirs.id, attachment.id)


def test_reads_of_unknown_things(client: Client) -> None:
    intent = client.create_intent("t")
    assert client.get_attachments(intent.id) == []
    with pytest.raises(NotFoundError):
        client.get_attachments("ghost")
    with pytest.raises(NotFoundError):
        client.get_attachment_content("ghost", "a1")
    with pytest.raises(NotFoundError) as info:
        client.get_attachment_content(intent.id, "a1")
    assert info.value.resource == "attachment"
    with pytest.raises(ValidationError):
        client.get_attachment_content(intent.id, "bad id!")


def test_closed_intents_take_no_attachments_but_drop_them(client: Client) -> None:
    intent = client.create_intent("t")
    attachment = _add(client, intent.id)
    client.set_status(intent.id, 1, "completed")
    with pytest.raises(IntentClosedError):
        _add(client, intent.id)
    client.delete_attachment(intent.id, attachment.id)
    assert client.get_attachments(intent.id) == []


def test_an_intent_holds_a_bounded_number(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    key = client.keyspace.attachments(intent.id)
    raw_redis.hset(key, mapping={f"f-{n}": "{}" for n in range(att.ATTACHMENTS_PER_INTENT)})
    with pytest.raises(PayloadTooLargeError):
        _add(client, intent.id)
    assert raw_redis.hlen(key) == att.ATTACHMENTS_PER_INTENT
    assert raw_redis.hlen(client.keyspace.attachment_content(intent.id)) == 0


def test_unicode_filenames_and_bytes_content(client: Client) -> None:
    intent = client.create_intent("t")
    attachment = _add(client, intent.id, filename="résumé 📄.txt", content_base64=b64(PDF).encode())
    assert client.get_attachments(intent.id)[0].filename == "résumé 📄.txt"
    assert client.get_attachment_content(intent.id, attachment.id) == PDF


@pytest.mark.anyio
async def test_async_attachments(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("t")
    attachment = await aclient.add_attachment(
        intent.id, "a.txt", "text/plain; charset=utf-8", b64(b"hello")
    )
    assert attachment.mime_type == "text/plain; charset=utf-8"
    assert await aclient.get_attachments(intent.id) == [attachment]
    assert await aclient.get_attachment_content(intent.id, attachment.id) == b"hello"
    with pytest.raises(PayloadTooLargeError):
        await aclient.add_attachment(
            intent.id, "big", content_base64="A" * (limits.ATTACHMENT_BYTES + 4)
        )
    assert await aclient.delete_attachment(intent.id, attachment.id) == attachment
    with pytest.raises(NotFoundError):
        await aclient.delete_attachment(intent.id, attachment.id)
