"""Provider adapters: wrap any chat-client call so that every request logs its
observability events (RFC-0008) on an intent, with no logging code at the call site.

``LLMAdapter`` wraps a sync callable for a ``Client``; ``AsyncLLMAdapter`` wraps an async
(or sync) callable for an ``AsyncClient``. Calling the adapter calls the wrapped function
with the same arguments and returns what it returns, having logged:

- ``llm_request_started`` before the call; ``llm_request_completed`` (content, finish
  reason, token usage, duration; a ``tokens`` cost when the adapter has prices) or
  ``llm_request_failed`` (then the provider's exception is re-raised unchanged);
- ``tool_call_started`` for each tool call the response asks for;
- for a streamed response, which is handed back wrapped (``LoggedStream`` /
  ``AsyncLoggedStream``: the same chunks, unchanged): ``stream_started``,
  ``stream_chunk`` every ``chunk_log_interval``-th chunk when ``log_stream_chunks`` is on,
  then ``stream_completed`` (and the request's completion, from the accumulated chunks)
  when the provider ends it, or ``stream_cancelled`` when it raises (plus
  ``llm_request_failed``) or the reader stops early: ``close()``/``aclose()``, leaving a
  ``with`` block, or dropping a stream it began reading.

Logging never breaks the caller's LLM call: a failed write (unknown intent, budget,
Redis down) or an extractor that raises goes to ``AdapterConfig.on_error(error,
context)``, or to a warning on the ``oibus.adapters`` logger when there is none. What
the adapter reads from requests and replies is the ``Extractor``'s business
(``oibus.sdk.extractors``), which is what keeps the adapters provider-neutral.

The two flavours are written by hand, like ``leasing``: they differ in how a stream is
relayed and closed. Every decision (what to log, when, with what) is made by the shared
``_Exchange``; the flavours only perform the writes.
"""

from __future__ import annotations

import inspect
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, Final, Generic, Self, TypeVar

import anyio
import msgspec

from oibus.bus.checks import check_text
from oibus.bus.costs import decimal_of
from oibus.bus.errors import ValidationError
from oibus.bus.events import EventType
from oibus.bus.keyspace import check_id
from oibus.sdk._async.observability import AsyncObservabilityMixin
from oibus.sdk._sync.observability import ObservabilityMixin
from oibus.sdk.extractors import Extractor, RequestInfo, ResponseInfo, ToolCallInfo

__all__ = ["AdapterConfig", "AsyncLLMAdapter", "AsyncLoggedStream", "LLMAdapter", "LoggedStream"]

logger = logging.getLogger("oibus.adapters")

C = TypeVar("C")
R = TypeVar("R")
A = TypeVar("A")

ErrorHandler = Callable[[Exception, dict[str, Any]], object]

ERROR_CHARS: Final = 4096
"""Longest error text logged for a failed request (a provider's message can be a page)."""
_EXTRACT: Final = "extract"
_CLOSE: Final = "close"


@dataclass(frozen=True, slots=True, kw_only=True)
class AdapterConfig:
    """What an adapter logs. ``on_error(error, context)`` hears of every write that
    failed (``context["phase"]`` is the event type, or ``extract``/``close``; also
    ``intent_id`` and ``request_id``). ``max_content_chars`` cuts the response text
    logged with ``llm_request_completed`` (``None``: all of it; ``0``: none), so a long
    answer cannot push the event past the payload limit."""

    log_requests: bool = True
    log_tool_calls: bool = True
    log_streams: bool = True
    log_stream_chunks: bool = False
    chunk_log_interval: int = 10
    on_error: ErrorHandler | None = None
    max_content_chars: int | None = 8192

    def __post_init__(self) -> None:
        interval = self.chunk_log_interval
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValidationError(
                "chunk_log_interval must be a whole number from 1", field="chunk_log_interval"
            )
        limit = self.max_content_chars
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValidationError(
                "max_content_chars must be None or a whole number from 0",
                field="max_content_chars",
            )


@dataclass(frozen=True, slots=True)
class _Step:
    """One client call to make: the event it logs and the call's keyword arguments."""

    event: EventType
    kwargs: dict[str, Any]


_METHODS: Final = {
    EventType.LLM_REQUEST_STARTED: "log_llm_request_started",
    EventType.LLM_REQUEST_COMPLETED: "log_llm_request_completed",
    EventType.LLM_REQUEST_FAILED: "log_llm_request_failed",
    EventType.TOOL_CALL_STARTED: "log_tool_call_started",
    EventType.STREAM_STARTED: "start_stream",
    EventType.STREAM_CHUNK: "log_stream_chunk",
    EventType.STREAM_COMPLETED: "complete_stream",
    EventType.STREAM_CANCELLED: "cancel_stream",
}

_arguments_decoder = msgspec.json.Decoder()


def _arguments(value: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """Tool arguments as the mapping the event holds: providers send JSON text, which may
    be cut off or not an object; what cannot be read is kept as ``raw`` text."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    try:
        decoded = _arguments_decoder.decode(value)
    except (msgspec.DecodeError, RecursionError):
        return {"raw": value}
    return decoded if isinstance(decoded, dict) else {"value": decoded}


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


class _Adapter(Generic[C]):
    """What both flavours share: configuration, and where failures are reported."""

    def __init__(
        self,
        create: Callable[..., Any],
        client: C,
        intent_id: str,
        *,
        provider: str,
        config: AdapterConfig | None = None,
        extractor: Extractor | None = None,
        prompt_price_per_1k: float | Decimal | None = None,
        completion_price_per_1k: float | Decimal | None = None,
        cost_unit: str = "USD",
    ) -> None:
        if not callable(create):
            raise TypeError("create must be the chat client's callable")
        self.create = create
        self.client = client
        self.intent_id = check_id(intent_id)
        self.provider = check_text(provider, "provider", 256)
        self.config = config if config is not None else AdapterConfig()
        self.extractor = extractor if extractor is not None else Extractor()
        for name, price in (
            ("prompt_price_per_1k", prompt_price_per_1k),
            ("completion_price_per_1k", completion_price_per_1k),
        ):
            if price is not None:
                decimal_of(price, name)  # a bad price fails here, not on every call
        self.prompt_price_per_1k = prompt_price_per_1k
        self.completion_price_per_1k = completion_price_per_1k
        self.cost_unit = cost_unit

    def report(self, error: Exception, phase: str, request_id: str) -> None:
        context = {"phase": phase, "intent_id": self.intent_id, "request_id": request_id}
        handler = self.config.on_error
        if handler is None:
            logger.warning(
                "oibus adapter could not log %s on intent %s: %s",
                phase,
                self.intent_id,
                _describe(error),
            )
            return
        try:
            handler(error, context)
        except Exception:
            logger.exception("oibus adapter: on_error raised while handling %r", error)

    def _exchange(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> _Exchange:
        return _Exchange(self, args, kwargs)


class _Exchange:
    """One request's bookkeeping: what to log at each point of its life, and the stream
    it may become (chunks counted, text and tool-call fragments joined). Pure: it says
    which client calls to make and the flavours make them."""

    def __init__(self, adapter: _Adapter[Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]):
        self.adapter = adapter
        self.config = adapter.config
        self.request_id = str(uuid.uuid4())
        self.request: RequestInfo = self._read(
            lambda: adapter.extractor.request(args, kwargs), RequestInfo()
        )
        self.model = self.request.model or "unknown"
        self.started = time.perf_counter()
        self.stream_id = str(uuid.uuid4())
        self.open = False
        self.chunks = 0
        self.content_chunks = 0
        self.text: list[str] = []
        self.last = ResponseInfo()
        self.calls: dict[int, _PartialCall] = {}

    def _read(self, read: Callable[[], Any], default: Any) -> Any:
        try:
            return read()
        except Exception as exc:
            self.adapter.report(exc, _EXTRACT, self.request_id)
            return default

    def _ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)

    def _request(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "provider": self.adapter.provider,
            "model": self.model,
            "messages_count": self.request.messages_count,
        }

    def _stream(self) -> dict[str, Any]:
        return {
            "stream_id": self.stream_id,
            "provider": self.adapter.provider,
            "model": self.model,
            "request_id": self.request_id,
        }

    def streams(self, response: Any) -> bool:
        return bool(
            self._read(lambda: self.adapter.extractor.is_stream(response, self.request), False)
        )

    # -- a plain request --------------------------------------------------------------
    def begin(self) -> list[_Step]:
        if not self.config.log_requests:
            return []
        r = self.request
        kwargs = self._request()
        kwargs.update(
            tools_available=r.tools_available,
            stream=r.stream,
            temperature=r.temperature,
            max_tokens=r.max_tokens,
        )
        return [_Step(EventType.LLM_REQUEST_STARTED, kwargs)]

    def failed(self, exc: BaseException) -> list[_Step]:
        if not self.config.log_requests:
            return []
        kwargs = self._request()
        kwargs.update(error=_describe(exc), duration_ms=self._ms())
        return [_Step(EventType.LLM_REQUEST_FAILED, kwargs)]

    def completed(self, response: Any) -> list[_Step]:
        info = self._read(lambda: self.adapter.extractor.response(response), ResponseInfo())
        return self._answered(info)

    def _answered(self, info: ResponseInfo) -> list[_Step]:
        """The request's completion, then each tool call it asks for."""
        calls = [
            (call.id or str(uuid.uuid4()), call.name or "unknown", call) for call in info.tool_calls
        ]
        steps = []
        if self.config.log_requests:
            kwargs = self._request()
            kwargs.update(
                response_content=self._content(info.content),
                tool_calls=[{"tool_id": i, "tool_name": n} for i, n, _ in calls] or None,
                finish_reason=info.finish_reason,
                prompt_tokens=info.prompt_tokens,
                completion_tokens=info.completion_tokens,
                total_tokens=info.total_tokens,
                duration_ms=self._ms(),
                **self._priced(info),
            )
            steps.append(_Step(EventType.LLM_REQUEST_COMPLETED, kwargs))
        if self.config.log_tool_calls:
            for tool_id, name, call in calls:
                kwargs = {
                    "tool_name": name,
                    "tool_id": tool_id,
                    "arguments": _arguments(call.arguments),
                    "provider": self.adapter.provider,
                    "model": self.model,
                    "parent_request_id": self.request_id,
                }
                steps.append(_Step(EventType.TOOL_CALL_STARTED, kwargs))
        return steps

    def _content(self, content: str | None) -> str | None:
        limit = self.config.max_content_chars
        if content is None or limit is None:
            return content
        return content[:limit] or None

    def _priced(self, info: ResponseInfo) -> dict[str, Any]:
        """The prices of the sides the usage can price: a response without token counts
        is logged without a cost rather than refused."""
        adapter = self.adapter
        out: dict[str, Any] = {}
        if adapter.prompt_price_per_1k is not None and info.prompt_tokens is not None:
            out["prompt_price_per_1k"] = adapter.prompt_price_per_1k
        if adapter.completion_price_per_1k is not None and info.completion_tokens is not None:
            out["completion_price_per_1k"] = adapter.completion_price_per_1k
        if out:
            out["cost_unit"] = adapter.cost_unit
        return out

    # -- a streamed request -----------------------------------------------------------
    def opened(self) -> list[_Step]:
        self.open = True
        if not self.config.log_streams:
            return []
        return [_Step(EventType.STREAM_STARTED, self._stream())]

    def chunk(self, chunk: Any) -> list[_Step]:
        index = self.chunks
        self.chunks += 1
        info = self._read(lambda: self.adapter.extractor.chunk(chunk), None)
        if info is not None:
            self._gather(info)
        cfg = self.config
        if cfg.log_streams and cfg.log_stream_chunks and index % cfg.chunk_log_interval == 0:
            kwargs = {"stream_id": self.stream_id, "chunk_index": index}
            return [_Step(EventType.STREAM_CHUNK, kwargs)]
        return []

    def _gather(self, info: ResponseInfo) -> None:
        if info.content:
            self.text.append(info.content)
            self.content_chunks += 1
        for call in info.tool_calls:
            index = call.index if call.index is not None else len(self.calls)
            self.calls.setdefault(index, _PartialCall()).add(call)
        last = self.last
        self.last = ResponseInfo(
            finish_reason=info.finish_reason or last.finish_reason,
            prompt_tokens=_latest(info.prompt_tokens, last.prompt_tokens),
            completion_tokens=_latest(info.completion_tokens, last.completion_tokens),
            total_tokens=_latest(info.total_tokens, last.total_tokens),
            model=info.model or last.model,
        )

    def _streamed(self) -> dict[str, Any]:
        kwargs = self._stream()
        completion = self.last.completion_tokens
        kwargs.update(
            chunks_received=self.chunks,
            # the provider's count when the stream reported usage, else one per text chunk
            tokens_streamed=completion if completion is not None else self.content_chunks,
            duration_ms=self._ms(),
        )
        return kwargs

    def finished(self) -> list[_Step]:
        self.open = False
        steps = []
        if self.config.log_streams:
            steps.append(_Step(EventType.STREAM_COMPLETED, self._streamed()))
        last = self.last
        info = ResponseInfo(
            content="".join(self.text) if self.text else None,
            finish_reason=last.finish_reason,
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
            total_tokens=last.total_tokens,
            tool_calls=[call.whole() for _, call in sorted(self.calls.items())],
        )
        return steps + self._answered(info)

    def broke(self, exc: BaseException) -> list[_Step]:
        """The provider raised in the middle of the stream."""
        return self._cancelled(_describe(exc)) + self.failed(exc)

    def abandoned(self) -> list[_Step]:
        """The reader stopped before the end (once: closing twice logs nothing more)."""
        if not self.open:
            return []
        return self._cancelled("the reader stopped before the end of the stream")

    def _cancelled(self, reason: str) -> list[_Step]:
        self.open = False
        if not self.config.log_streams:
            return []
        kwargs = self._streamed()
        kwargs["reason"] = reason
        return [_Step(EventType.STREAM_CANCELLED, kwargs)]


def _latest(new: int | None, old: int | None) -> int | None:
    return old if new is None else new


class _PartialCall:
    """A tool call being streamed: its id and name arrive once, its arguments as pieces
    of JSON text (or, from some providers, as one mapping)."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.text: list[str] = []
        self.mapping: Mapping[str, Any] | None = None

    def add(self, part: ToolCallInfo) -> None:
        self.id = self.id or part.id
        self.name = self.name or part.name
        if isinstance(part.arguments, str):
            self.text.append(part.arguments)
        elif part.arguments is not None:
            self.mapping = part.arguments

    def whole(self) -> ToolCallInfo:
        arguments = self.mapping if self.mapping is not None else "".join(self.text)
        return ToolCallInfo(name=self.name, id=self.id, arguments=arguments)


class _View(Generic[R, A]):
    """A provider's stream as an adapter hands it back: iterating it goes through the
    relay that logs; any other attribute is the provider's stream's."""

    def __init__(self, source: Any, relay: R, adapter: A, exchange: _Exchange) -> None:
        self._source = source
        self._relay = relay
        self._adapter = adapter
        self._exchange = exchange

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not ours, and not the provider's to answer (copy, pickle)
            raise AttributeError(name)
        return getattr(self._source, name)


# -- sync ---------------------------------------------------------------------------------
class LLMAdapter(_Adapter[ObservabilityMixin]):
    """Wraps ``create``, a sync chat-client callable (``openai_client.chat.completions.
    create``, or any function), so that calling the adapter logs the request's events on
    ``intent_id`` through ``client``. ``provider`` names the provider in the events.
    With ``prompt_price_per_1k`` / ``completion_price_per_1k`` (per 1,000 tokens, in
    ``cost_unit``) each completion's usage is recorded as a cost too."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        exchange = self._exchange(args, kwargs)
        self._emit(exchange, exchange.begin())
        try:
            response = self.create(*args, **kwargs)
            if inspect.isawaitable(response):
                if inspect.iscoroutine(response):
                    response.close()  # never awaited: say so here, not in a warning later
                raise TypeError("the wrapped call is async: wrap it with AsyncLLMAdapter")
        except Exception as exc:
            self._emit(exchange, exchange.failed(exc))
            raise
        if not (exchange.streams(response) and hasattr(response, "__iter__")):
            self._emit(exchange, exchange.completed(response))
            return response
        self._emit(exchange, exchange.opened())
        return LoggedStream(response, self._relay(exchange, response), self, exchange)

    def _relay(self, exchange: _Exchange, source: Any) -> Generator[Any, None, None]:
        try:
            for chunk in source:
                self._emit(exchange, exchange.chunk(chunk))
                yield chunk
        except Exception as exc:
            self._emit(exchange, exchange.broke(exc))
            raise
        except BaseException:  # GeneratorExit: closed or dropped before the end
            self._abandon(exchange, source)
            raise
        self._emit(exchange, exchange.finished())

    def _abandon(self, exchange: _Exchange, source: Any) -> None:
        if not exchange.open:
            return
        self._emit(exchange, exchange.abandoned())
        try:
            close = getattr(source, "close", None)
            if callable(close):
                close()  # let the provider's client free its connection
        except Exception as exc:
            self.report(exc, _CLOSE, exchange.request_id)

    def _emit(self, exchange: _Exchange, steps: list[_Step]) -> None:
        for step in steps:
            try:
                getattr(self.client, _METHODS[step.event])(self.intent_id, **step.kwargs)
            except Exception as exc:
                self.report(exc, str(step.event), exchange.request_id)


class LoggedStream(_View[Generator[Any, None, None], LLMAdapter]):
    """A provider's stream as ``LLMAdapter`` hands it back: the same chunks, logged.
    Other attributes are the provider's stream's. Close it (or use ``with``) when
    stopping early, so that ``stream_cancelled`` is logged at once."""

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Any:
        return next(self._relay)

    def close(self) -> None:
        self._relay.close()  # a relay that has begun logs the cancellation itself
        self._adapter._abandon(self._exchange, self._source)  # also if never read

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- async --------------------------------------------------------------------------------
class AsyncLLMAdapter(_Adapter[AsyncObservabilityMixin]):
    """``LLMAdapter`` for an ``AsyncClient``: ``await adapter(...)``. ``create`` may be
    async (``AsyncOpenAI().chat.completions.create``) or sync (it then runs on the event
    loop), and a stream it returns may be async or sync."""

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        exchange = self._exchange(args, kwargs)
        await self._emit(exchange, exchange.begin())
        try:
            response = self.create(*args, **kwargs)
            if inspect.isawaitable(response):
                response = await response
        except Exception as exc:
            await self._emit(exchange, exchange.failed(exc))
            raise
        if not exchange.streams(response):
            await self._emit(exchange, exchange.completed(response))
            return response
        await self._emit(exchange, exchange.opened())
        return AsyncLoggedStream(response, self._relay(exchange, response), self, exchange)

    async def _relay(self, exchange: _Exchange, source: Any) -> AsyncGenerator[Any, None]:
        try:
            async for chunk in _chunks(source):
                await self._emit(exchange, exchange.chunk(chunk))
                yield chunk
        except Exception as exc:
            await self._emit(exchange, exchange.broke(exc))
            raise
        except BaseException:  # GeneratorExit (closed, or dropped) or cancellation
            await self._abandon(exchange, source)
            raise
        await self._emit(exchange, exchange.finished())

    async def _abandon(self, exchange: _Exchange, source: Any) -> None:
        if not exchange.open:
            return
        with anyio.CancelScope(shield=True):  # record it even when the reader is cancelled
            await self._emit(exchange, exchange.abandoned())
            try:
                close = getattr(source, "aclose", None) or getattr(source, "close", None)
                if callable(close):
                    closing = close()
                    if inspect.isawaitable(closing):
                        await closing
            except Exception as exc:
                self.report(exc, _CLOSE, exchange.request_id)

    async def _emit(self, exchange: _Exchange, steps: list[_Step]) -> None:
        for step in steps:
            try:
                await getattr(self.client, _METHODS[step.event])(self.intent_id, **step.kwargs)
            except Exception as exc:
                self.report(exc, str(step.event), exchange.request_id)


class _SyncChunks:
    """A sync stream read by ``async for``."""

    def __init__(self, source: Any) -> None:
        self._it = iter(source)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        try:
            return next(self._it)
        except StopIteration:
            raise StopAsyncIteration from None


def _chunks(source: Any) -> Any:
    return source if hasattr(source, "__aiter__") else _SyncChunks(source)


class AsyncLoggedStream(_View[AsyncGenerator[Any, None], AsyncLLMAdapter]):
    """A provider's stream as ``AsyncLLMAdapter`` hands it back: the same chunks, logged.
    Other attributes are the provider's stream's. Close it (``aclose()``/``close()``, or
    ``async with``) when stopping early: a dropped async stream is only closed when the
    event loop gets round to finalising it."""

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        return await anext(self._relay)

    async def aclose(self) -> None:
        await self._relay.aclose()
        await self._adapter._abandon(self._exchange, self._source)  # also if never read

    async def close(self) -> None:
        """The name the OpenAI SDK's async stream uses."""
        await self.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
