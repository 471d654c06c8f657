"""The provider adapter over the official ``google-genai`` package: Gemini's
``generateContent`` with function calling and streaming, through ``client.aio.models``.

Gemini's shape differs from the neutral conversation in three ways, all handled here:

- the system prompt is no turn but the request's ``system_instruction`` (several system
  turns are joined);
- the assistant is the ``model`` role, and a tool's result is a ``function_response`` part
  in a *user* turn, matched to its call by name and, when the call carried one, by id: the
  results of one model turn go together in the user turn after it. The API refuses a
  history where a call is not answered there, so it is refused here with the ids named,
  before anything is sent;
- a model turn's parts carry thought signatures, which Gemini wants back on the parts they
  came with (Gemini 3 refuses a function call sent back without its own): the reply keeps
  the parts in ``provider_data["gemini_parts"]`` and the next request sends them unchanged
  (rebuilt from the text and tool calls only for a turn another provider wrote).

``complete`` and ``stream`` share one reading: the stream's chunks are joined into the
parts a whole response has (the pieces of one text part joined, each function call whole,
the last usage) and the same function makes the reply of both.

Function-call arguments arrive as an object (a protobuf ``Struct``: the SDK refuses a reply
with anything else), so there is no ``{"raw": ...}`` case as with OpenAI. A call that
came without an id gets one made up, as results must name their call; the made-up id is
never sent to Gemini, which matches such results by name and order.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from oibus.bus.errors import ConfigurationError, ValidationError
from oibus.sdk.llm.messages import Message, Reply, StreamEvent, ToolCall, ToolSpec, Usage
from oibus.sdk.llm.provider import RequestSettings

try:
    from google import genai
    from google.genai import types
except ImportError as exc:  # the SDK is an optional extra
    raise ConfigurationError(
        "the gemini provider needs the google-genai package: pip install oibus[gemini]"
    ) from exc

__all__ = ["PARTS", "GeminiProvider", "to_gemini_contents", "to_gemini_tools"]

PARTS = "gemini_parts"
"""The key of ``Message.provider_data`` that holds a model turn's parts (as JSON)."""


class GeminiProvider:
    """Content generation through ``google.genai.Client``. Give a ready ``client``, or the
    arguments to make one: ``api_key``; ``base_url``, the service's root (a proxy's), to
    which the SDK adds the API version; ``http_client``, an ``httpx`` (or ``httpx2``)
    ``AsyncClient``; ``max_retries`` (the SDK retries nothing unless told); ``timeout`` in
    seconds."""

    def __init__(
        self,
        client: genai.Client | None = None,
        *,
        name: str = "gemini",
        api_key: str | None = None,
        base_url: str | None = None,
        http_client: Any = None,
        max_retries: int | None = None,
        timeout: float | None = None,
    ) -> None:
        self.name = name
        if client is None:
            options = types.HttpOptions(base_url=base_url, httpx_async_client=http_client)
            if max_retries is not None:
                options.retry_options = types.HttpRetryOptions(attempts=max_retries + 1)
            if timeout is not None:
                options.timeout = round(timeout * 1000)  # the SDK counts milliseconds
            client = genai.Client(api_key=api_key, http_options=options)
        self.client = client

    def request(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], settings: RequestSettings
    ) -> dict[str, Any]:
        """The keyword arguments of ``models.generate_content`` (and of its ``_stream``)."""
        system, contents = to_gemini_contents(messages)
        config = types.GenerateContentConfig(
            max_output_tokens=settings.max_tokens,
            # the engine runs the tools itself (events, budget, a round persisted at a
            # time): the SDK must hand every call back, never run one
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        if settings.temperature is not None:  # None: the model's own default
            config.temperature = settings.temperature
        if system:
            config.system_instruction = system
        if tools:
            config.tools = [types.Tool(function_declarations=to_gemini_tools(tools))]
        return {"model": settings.model, "contents": contents, "config": config}

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], settings: RequestSettings
    ) -> Reply:
        body = self.request(messages, tools, settings)
        response = await self.client.aio.models.generate_content(**body)
        parts: list[dict[str, Any]] | None = None  # None: no candidate
        finish: str | None = None
        if response.candidates:
            candidate = response.candidates[0]
            parts = [_part(p) for p in (candidate.content and candidate.content.parts) or ()]
            finish = _finish(candidate.finish_reason)
        return _reply(
            name=self.name,
            parts=parts,
            finish_reason=finish,
            usage=response.usage_metadata,
            blocked=response.prompt_feedback,
            model=response.model_version,
            request_id=response.response_id,
        )

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], settings: RequestSettings
    ) -> AsyncIterator[StreamEvent]:
        body = self.request(messages, tools, settings)
        chunks = await self.client.aio.models.generate_content_stream(**body)
        parts: list[dict[str, Any]] | None = None  # None until a chunk has a candidate
        finish: str | None = None
        usage: types.GenerateContentResponseUsageMetadata | None = None
        blocked: types.GenerateContentResponsePromptFeedback | None = None
        model: str | None = None
        request_id: str | None = None
        try:
            async for chunk in chunks:
                model = chunk.model_version or model
                request_id = chunk.response_id or request_id
                usage = chunk.usage_metadata or usage  # cumulative counts
                blocked = chunk.prompt_feedback or blocked
                if not chunk.candidates:
                    continue
                candidate = chunk.candidates[0]
                finish = _finish(candidate.finish_reason) or finish
                if parts is None:
                    parts = []
                for piece in (candidate.content and candidate.content.parts) or ():
                    part = _part(piece)
                    _join(parts, part)
                    if part.get("text") and not part.get("thought"):
                        yield StreamEvent(token=part["text"])
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:  # free the connection when the reader stops early
                await close()
        yield StreamEvent(
            reply=_reply(
                name=self.name,
                parts=parts,
                finish_reason=finish,
                usage=usage,
                blocked=blocked,
                model=model,
                request_id=request_id,
            )
        )


def _part(part: types.Part) -> dict[str, Any]:
    """A reply's part as JSON that survives the conversation's record (thought signatures
    as base64) and validates back into the part it was, less the unset fields."""
    data: dict[str, Any] = part.model_dump(mode="json", exclude_none=True)
    return data


def _is_text(part: dict[str, Any]) -> bool:
    return "text" in part and set(part) <= {"text", "thought", "thought_signature"}


def _join(parts: list[dict[str, Any]], part: dict[str, Any]) -> None:
    """Add a streamed part: the next piece of the text part before it joins it (same kind,
    thought or not, and that part not closed by its signature, which comes with its last
    piece), anything else is a part of its own."""
    last = parts[-1] if parts else None
    if (
        last is not None
        and _is_text(last)
        and _is_text(part)
        and "thought_signature" not in last
        and bool(last.get("thought")) == bool(part.get("thought"))
    ):
        last["text"] += part["text"]
        if "thought_signature" in part:
            last["thought_signature"] = part["thought_signature"]
    else:
        parts.append(part)


def _finish(reason: types.FinishReason | None) -> str | None:
    return None if reason is None else str(reason.value)


def _usage(usage: types.GenerateContentResponseUsageMetadata | None) -> Usage:
    """Every token the request was billed for: Gemini counts the thinking tokens (billed
    as output) and the prompt tokens of its built-in tools apart from the others."""
    if usage is None:
        return Usage()
    return Usage(
        prompt_tokens=(usage.prompt_token_count or 0) + (usage.tool_use_prompt_token_count or 0),
        completion_tokens=(usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0),
    )


def _reply(
    *,
    name: str,
    parts: list[dict[str, Any]] | None,
    finish_reason: str | None,
    usage: types.GenerateContentResponseUsageMetadata | None,
    blocked: types.GenerateContentResponsePromptFeedback | None,
    model: str | None,
    request_id: str | None,
) -> Reply:
    """The neutral reply from the parts of the first candidate, whole or streamed (None:
    there was no candidate, as when the prompt itself was blocked)."""
    if parts is None:
        reason = blocked.block_reason if blocked is not None else None
        raise ValidationError(
            f"{name} answered with no candidate"
            + (f" (the prompt was blocked: {reason.value})" if reason is not None else ""),
            field="candidates",
        )
    # an empty text part carries nothing, and the API refuses one sent back
    parts = [p for p in parts if p != {"text": ""}]
    text = "".join(p.get("text", "") for p in parts if not p.get("thought"))
    calls = []
    for part in parts:
        call = part.get("function_call")
        if call is None:
            continue
        if not call.get("name"):
            raise ValidationError("a function call came without a name", field="function_call")
        calls.append(
            ToolCall(
                id=call.get("id") or f"call_{uuid.uuid4().hex}",
                name=call["name"],
                arguments=call.get("args") or {},
            )
        )
    return Reply(
        message=Message(
            role="assistant",
            content=text,
            tool_calls=tuple(calls),
            provider_data={PARTS: parts},
        ),
        usage=_usage(usage),
        finish_reason=finish_reason,
        model=model,
        request_id=request_id,
    )


def _model_parts(message: Message) -> tuple[list[types.Part], list[str | None]]:
    """The turn's parts as Gemini sent them, and the id each function call carries there;
    rebuilt from its text and calls (ids included) when it has none, when they no longer
    validate, or when they no longer hold the turn's tool calls."""
    kept = (message.provider_data or {}).get(PARTS)
    if isinstance(kept, list):
        try:
            parts = [types.Part.model_validate_json(json.dumps(p)) for p in kept]
        except (TypeError, ValueError):  # pydantic's ValidationError is a ValueError
            parts = []
        sent = [p.function_call for p in parts if p.function_call is not None]
        if (
            parts
            and len(sent) == len(message.tool_calls)
            and all(
                s.name == c.name and s.id in (None, c.id)
                for s, c in zip(sent, message.tool_calls, strict=True)
            )
        ):
            return parts, [s.id for s in sent]
    rebuilt = [types.Part(text=message.content)] if message.content else []
    for call in message.tool_calls:
        rebuilt.append(
            types.Part(
                function_call=types.FunctionCall(id=call.id, name=call.name, args=call.arguments)
            )
        )
    return rebuilt, [call.id for call in message.tool_calls]


def _response(content: str) -> dict[str, Any]:
    """A tool's JSON result as the object a ``function_response`` must hold: an object as
    it is, anything else (a bare value, text that is not JSON) under ``output``, the key
    Gemini reads a function's output from."""
    try:
        value = json.loads(content)
    except (ValueError, RecursionError):
        value = content
    return value if isinstance(value, dict) else {"output": value}


def to_gemini_contents(messages: Sequence[Message]) -> tuple[str, list[types.Content]]:
    """The ``system_instruction`` text and the contents of a request. Tool results join
    the user turn after their model turn; every function call must be answered before
    the next model turn, and every result must answer one, or this raises
    ``ValidationError``."""
    _check_pairs(messages)
    system: list[str] = []
    contents: list[types.Content] = []
    answers: dict[str, tuple[str, str | None]] = {}  # call id -> name, id sent with it

    def user(part: types.Part) -> None:
        if contents and contents[-1].role == "user" and contents[-1].parts is not None:
            contents[-1].parts.append(part)
        else:
            contents.append(types.Content(role="user", parts=[part]))

    for message in messages:
        if message.role == "system":
            if message.content:
                system.append(message.content)
        elif message.role == "user":
            if message.content:
                user(types.Part(text=message.content))
        elif message.role == "tool":
            call_name, sent_id = answers[message.tool_call_id or ""]
            user(
                types.Part(
                    function_response=types.FunctionResponse(
                        id=sent_id,
                        name=message.name or call_name,
                        response=_response(message.content),
                    )
                )
            )
        else:
            parts, ids = _model_parts(message)
            for call, sent_id in zip(message.tool_calls, ids, strict=True):
                answers[call.id] = (call.name, sent_id)
            if parts:  # the API refuses a turn with no part
                contents.append(types.Content(role="model", parts=parts))
    return "\n\n".join(system), contents


def _check_pairs(messages: Sequence[Message]) -> None:
    """Each tool call answered by a tool turn before the next assistant turn, and each
    tool turn answering a call of the assistant turn before it: the API refuses anything
    else, so a history cut between a call and its result fails here, naming the ids."""
    asked: set[str] = set()
    for message in messages:
        if message.role == "tool":
            if not message.tool_call_id:
                raise ValidationError("a tool turn needs its tool_call_id", field="tool_call_id")
            if message.tool_call_id not in asked:
                raise ValidationError(
                    f"tool result {message.tool_call_id!r} answers no tool call of the turn "
                    "before it",
                    field="messages",
                )
            asked.discard(message.tool_call_id)
        elif message.role == "assistant":
            if asked:
                break
            asked = {call.id for call in message.tool_calls}
    if asked:
        raise ValidationError(
            f"tool calls {sorted(asked)} have no result before the next model turn: the "
            "conversation was cut between a tool call and its result",
            field="messages",
        )


def to_gemini_tools(tools: Sequence[ToolSpec]) -> list[types.FunctionDeclaration]:
    """Function declarations with their schemas as JSON Schema (``parameters_json_schema``):
    ``parameters`` takes only Gemini's OpenAPI subset and refuses the rest of JSON
    Schema."""
    return [
        types.FunctionDeclaration(
            name=tool.name, description=tool.description, parameters_json_schema=tool.parameters
        )
        for tool in tools
    ]
