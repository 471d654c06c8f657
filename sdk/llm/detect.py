"""Which provider serves a model, and its client made from the environment: what an
agent's ``model=`` (with ``provider=`` and ``llm_api_key=``) becomes when it starts.

The provider follows the model's name (the seed's table): ``gpt-``, ``o1``/``o3``/``o4``
→ openai, ``claude-`` → anthropic, ``gemini-`` → gemini, ``grok-`` → grok, ``deepseek-``
→ deepseek, a name with ``/`` → openrouter, anything else → openai. Grok, DeepSeek and
OpenRouter speak OpenAI's API at their own base URL. The key comes from the provider's
environment variable unless one is given. A missing key or SDK package raises
``ConfigurationError`` here, naming the variable or the extra to install, so an agent
fails when it starts rather than at its first ``think()``.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Final

from oibus.bus.errors import ConfigurationError
from oibus.sdk.llm.provider import Provider

__all__ = ["PROVIDERS", "ProviderInfo", "detect_provider", "provider_for"]


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """How to reach one provider: its key's environment variable, the adapter module
    and class that speak its API, the extra that installs the SDK, and the base URL
    when it is not the SDK's own."""

    env: str
    module: str
    cls: str
    extra: str
    base_url: str | None = None


PROVIDERS: Final[dict[str, ProviderInfo]] = {
    "openai": ProviderInfo("OPENAI_API_KEY", "openai", "OpenAIProvider", "openai"),
    "anthropic": ProviderInfo("ANTHROPIC_API_KEY", "anthropic", "AnthropicProvider", "anthropic"),
    "gemini": ProviderInfo("GOOGLE_API_KEY", "gemini", "GeminiProvider", "gemini"),
    "grok": ProviderInfo(
        "XAI_API_KEY", "openai", "OpenAIProvider", "openai", "https://api.x.ai/v1"
    ),
    "deepseek": ProviderInfo(
        "DEEPSEEK_API_KEY", "openai", "OpenAIProvider", "openai", "https://api.deepseek.com"
    ),
    "openrouter": ProviderInfo(
        "OPENROUTER_API_KEY", "openai", "OpenAIProvider", "openai", "https://openrouter.ai/api/v1"
    ),
}

_PREFIXES: Final = (
    ("gpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("claude-", "anthropic"),
    ("gemini-", "gemini"),
    ("grok-", "grok"),
    ("deepseek-", "deepseek"),
)


def detect_provider(model: str) -> str:
    """The provider's name for a model name (the seed's table)."""
    if not isinstance(model, str) or not model.strip():
        raise ConfigurationError("model must name a model (e.g. gpt-5.2, claude-sonnet-4-5)")
    name = model.strip().lower()
    if name == "scripted" or name.startswith("scripted:"):
        raise ConfigurationError(
            f"model {model!r} has no provider to detect: pass the script as the provider, "
            "provider=ScriptedProvider([...]) (from oibus import ScriptedProvider)"
        )
    for prefix, provider in _PREFIXES:
        if name.startswith(prefix):
            return provider
    if "/" in name:
        return "openrouter"
    return "openai"


def provider_for(
    model: str,
    provider: str | Provider | None = None,
    api_key: str | None = None,
    *,
    base_url: str | None = None,
    **client_options: Any,
) -> Provider:
    """The provider that answers ``model``: ``provider`` itself when it is a provider
    object (a ``ScriptedProvider``, any client of the protocol), else the adapter for
    ``provider`` (a name) or for the provider the model's name implies. ``api_key``
    defaults to the provider's environment variable and ``base_url`` to its endpoint;
    ``client_options`` (``http_client``, ``max_retries``, ``timeout``) go to the SDK's
    client."""
    if provider is not None and not isinstance(provider, str):
        if not isinstance(provider, Provider):
            raise ConfigurationError(
                f"provider must be a provider name ({', '.join(PROVIDERS)}) or an object "
                f"with name, complete() and stream(), not {type(provider).__name__}"
            )
        return provider
    name = provider.strip().lower() if provider is not None else detect_provider(model)
    info = PROVIDERS.get(name)
    if info is None:
        raise ConfigurationError(
            f"unknown provider {provider!r}: use one of {', '.join(PROVIDERS)}, "
            "or pass a provider object"
        )
    try:
        module = importlib.import_module(f"oibus.sdk.llm.{info.module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"oibus.sdk.llm.{info.module}":
            raise
        raise ConfigurationError(
            f"model {model!r} needs the {name} provider, which this version of oibus has "
            "no adapter for: pass provider= a provider object (oibus.Provider)"
        ) from exc
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"model {model!r} needs the {name} provider, whose SDK is not installed: "
            f"pip install oibus[{info.extra}] ({exc})"
        ) from exc
    key = api_key if api_key is not None else os.environ.get(info.env)
    if not key:
        raise ConfigurationError(
            f"model {model!r} needs an API key for the {name} provider: set {info.env} "
            "or pass llm_api_key="
        )
    adapter: Provider = getattr(module, info.cls)(
        name=name, api_key=key, base_url=base_url or info.base_url, **client_options
    )
    return adapter
