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
from typing import Any, Generic, TypeVar

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
    def __init__(self, client: Any, adapter: W) -> None:
        self.client = client
        self.adapter: W = adapter
        """The ``LLMAdapter`` (or ``AsyncLLMAdapter``) that logs the chat call."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.client, name)


def _options(
    provider: str,
    config: AdapterConfig | None,
    extractor: Extractor,
    prompt_price_per_1k: float | Decimal | None,
    completion_price_per_1k: float | Decimal | None,
    cost_unit: str,
) -> dict[str, Any]:
    return {
        "provider": provider,
        "config": config,
        "extractor": extractor,
        "prompt_price_per_1k": prompt_price_per_1k,
        "completion_price_per_1k": completion_price_per_1k,
        "cost_unit": cost_unit,
    }


class OpenAIAdapter(_Wrapper[LLMAdapter]):
    """``openai.OpenAI`` (or a compatible client: name it with ``provider``) whose
    ``chat.completions.create`` logs on ``intent_id`` through ``oibus_client`` (a
    ``Client``). Prices per 1,000 tokens record each completion's usage as a cost."""

    def __init__(
        self,
        client: Any,
        oibus_client: Any,
        intent_id: str,
        *,
        provider: str = "openai",
        config: AdapterConfig | None = None,
        extractor: Extractor | None = None,
        prompt_price_per_1k: float | Decimal | None = None,
        completion_price_per_1k: float | Decimal | None = None,
        cost_unit: str = "USD",
    ) -> None:
        options = _options(
            provider,
            config,
            extractor or OpenAIExtractor(),
            prompt_price_per_1k,
            completion_price_per_1k,
            cost_unit,
        )
        adapter = LLMAdapter(client.chat.completions.create, oibus_client, intent_id, **options)
        super().__init__(client, adapter)
        self.chat = _Chat(adapter)


class AsyncOpenAIAdapter(_Wrapper[AsyncLLMAdapter]):
    """``OpenAIAdapter`` for ``openai.AsyncOpenAI`` and an ``AsyncClient``:
    ``await adapter.chat.completions.create(...)``."""

    def __init__(
        self,
        client: Any,
        oibus_client: Any,
        intent_id: str,
        *,
        provider: str = "openai",
        config: AdapterConfig | None = None,
        extractor: Extractor | None = None,
        prompt_price_per_1k: float | Decimal | None = None,
        completion_price_per_1k: float | Decimal | None = None,
        cost_unit: str = "USD",
    ) -> None:
        options = _options(
            provider,
            config,
            extractor or OpenAIExtractor(),
            prompt_price_per_1k,
            completion_price_per_1k,
            cost_unit,
        )
        adapter = AsyncLLMAdapter(
            client.chat.completions.create, oibus_client, intent_id, **options
        )
        super().__init__(client, adapter)
        self.chat = _Chat(adapter)


class AnthropicAdapter(_Wrapper[LLMAdapter]):
    """``anthropic.Anthropic`` whose ``messages.create`` logs on ``intent_id`` through
    ``oibus_client`` (a ``Client``), read with ``AnthropicExtractor``."""

    def __init__(
        self,
        client: Any,
        oibus_client: Any,
        intent_id: str,
        *,
        provider: str = "anthropic",
        config: AdapterConfig | None = None,
        extractor: Extractor | None = None,
        prompt_price_per_1k: float | Decimal | None = None,
        completion_price_per_1k: float | Decimal | None = None,
        cost_unit: str = "USD",
    ) -> None:
        options = _options(
            provider,
            config,
            extractor or AnthropicExtractor(),
            prompt_price_per_1k,
            completion_price_per_1k,
            cost_unit,
        )
        adapter = LLMAdapter(client.messages.create, oibus_client, intent_id, **options)
        super().__init__(client, adapter)
        self.messages = _Messages(adapter, client.messages)


class AsyncAnthropicAdapter(_Wrapper[AsyncLLMAdapter]):
    """``AnthropicAdapter`` for ``anthropic.AsyncAnthropic`` and an ``AsyncClient``:
    ``await adapter.messages.create(...)``."""

    def __init__(
        self,
        client: Any,
        oibus_client: Any,
        intent_id: str,
        *,
        provider: str = "anthropic",
        config: AdapterConfig | None = None,
        extractor: Extractor | None = None,
        prompt_price_per_1k: float | Decimal | None = None,
        completion_price_per_1k: float | Decimal | None = None,
        cost_unit: str = "USD",
    ) -> None:
        options = _options(
            provider,
            config,
            extractor or AnthropicExtractor(),
            prompt_price_per_1k,
            completion_price_per_1k,
            cost_unit,
        )
        adapter = AsyncLLMAdapter(client.messages.create, oibus_client, intent_id, **options)
        super().__init__(client, adapter)
        self.messages = _Messages(adapter, client.messages)
