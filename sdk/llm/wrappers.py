"""The seed's ``OpenAIAdapter`` / ``AnthropicAdapter``: a provider's own client, wrapped
so that its chat call logs the RFC-0008 events on an intent.

They are named constructors over ``LLMAdapter`` / ``AsyncLLMAdapter``
(``oibus.sdk.adapters``), which do the logging, with the extractor for the provider's
reply shape (``oibus.sdk.extractors``). The wrapper has the client's path to that call,
so code written against the client keeps working::

    adapter = OpenAIAdapter(OpenAI(), client, intent_id=intent.id)
    adapter.chat.completions.create(model="gpt-4o", messages=[...])   # logged

    adapter = AnthropicAdapter(Anthropic(), client, intent_id=intent.id)
    adapter.messages.create(model="claude-sonnet-4-5", max_tokens=1024, messages=[...])

Streams are logged when asked for with ``stream=True``. Anything else of the client is
reached through the wrapper unchanged (and is not logged); Anthropic's
``messages.stream()`` helper is refused by name, since its events would not be logged:
``messages.create(stream=True)`` is the logged way. ``AsyncOpenAIAdapter`` /
``AsyncAnthropicAdapter`` do the same for the SDKs' async clients and an ``AsyncClient``.
Neither imports a provider SDK: the client given is the user's.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar, Generic, TypeVar, cast

from oibus.sdk.adapters import AdapterConfig, AsyncLLMAdapter, LLMAdapter
from oibus.sdk.extractors import AnthropicExtractor, Extractor, OpenAIExtractor

__all__ = ["AnthropicAdapter", "AsyncAnthropicAdapter", "AsyncOpenAIAdapter", "OpenAIAdapter"]

W = TypeVar("W", bound=LLMAdapter | AsyncLLMAdapter)


class _Completions(Generic[W]):
    def __init__(self, create: W) -> None:
        self.create: W = create


class _Chat(Generic[W]):
    def __init__(self, create: W) -> None:
        self.completions: _Completions[W] = _Completions(create)


class _Messages(Generic[W]):
    def __init__(self, create: W, source: Any) -> None:
        self.create: W = create
        self._source = source

    def __getattr__(self, name: str) -> Any:
        if name == "stream":
            raise AttributeError(
                "messages.stream() is not logged by the adapter: use "
                "messages.create(..., stream=True), whose events it logs"
            )
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._source, name)  # count_tokens, batches: not logged


class _Wrapper(Generic[W]):
    """One constructor for the four wrappers: each names its adapter class (sync or
    async), default provider and extractor, where its client's chat call is, and the
    path the caller reaches it by."""

    adapter_class: ClassVar[type[LLMAdapter] | type[AsyncLLMAdapter]]
    default_provider: ClassVar[str]
    default_extractor: ClassVar[type[Extractor]]

    def __init__(
        self,
        client: Any,
        oibus_client: Any,
        intent_id: str,
        *,
        provider: str | None = None,
        config: AdapterConfig | None = None,
        extractor: Extractor | None = None,
        prompt_price_per_1k: float | Decimal | None = None,
        completion_price_per_1k: float | Decimal | None = None,
        cost_unit: str = "USD",
    ) -> None:
        self.client = client
        self.adapter: W = cast(
            W,
            self.adapter_class(
                self._endpoint(client),
                oibus_client,
                intent_id,
                provider=provider or self.default_provider,
                config=config,
                extractor=extractor or self.default_extractor(),
                prompt_price_per_1k=prompt_price_per_1k,
                completion_price_per_1k=completion_price_per_1k,
                cost_unit=cost_unit,
            ),
        )
        """The ``LLMAdapter`` (or ``AsyncLLMAdapter``) that logs the chat call."""
        self._attach(self.adapter, client)

    @staticmethod
    def _endpoint(client: Any) -> Any:
        raise NotImplementedError

    def _attach(self, adapter: W, client: Any) -> None:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.client, name)


class _OpenAIShape(_Wrapper[W]):
    default_provider = "openai"
    default_extractor = OpenAIExtractor

    @staticmethod
    def _endpoint(client: Any) -> Any:
        return client.chat.completions.create

    def _attach(self, adapter: W, client: Any) -> None:
        self.chat = _Chat(adapter)


class _AnthropicShape(_Wrapper[W]):
    default_provider = "anthropic"
    default_extractor = AnthropicExtractor

    @staticmethod
    def _endpoint(client: Any) -> Any:
        return client.messages.create

    def _attach(self, adapter: W, client: Any) -> None:
        self.messages = _Messages(adapter, client.messages)


class OpenAIAdapter(_OpenAIShape[LLMAdapter]):
    """``openai.OpenAI`` (or a compatible client: name it with ``provider``) whose
    ``chat.completions.create`` logs on ``intent_id`` through ``oibus_client`` (a
    ``Client``). Prices per 1,000 tokens record each completion's usage as a cost."""

    adapter_class = LLMAdapter


class AsyncOpenAIAdapter(_OpenAIShape[AsyncLLMAdapter]):
    """``OpenAIAdapter`` for ``openai.AsyncOpenAI`` and an ``AsyncClient``:
    ``await adapter.chat.completions.create(...)``."""

    adapter_class = AsyncLLMAdapter


class AnthropicAdapter(_AnthropicShape[LLMAdapter]):
    """``anthropic.Anthropic`` whose ``messages.create`` logs on ``intent_id`` through
    ``oibus_client`` (a ``Client``), read with ``AnthropicExtractor``."""

    adapter_class = LLMAdapter


class AsyncAnthropicAdapter(_AnthropicShape[AsyncLLMAdapter]):
    """``AnthropicAdapter`` for ``anthropic.AsyncAnthropic`` and an ``AsyncClient``:
    ``await adapter.messages.create(...)``."""

    adapter_class = AsyncLLMAdapter
