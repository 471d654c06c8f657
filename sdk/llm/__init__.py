"""The LLM engine of agents (``think()``, the tool loop, memory, provider adapters): part of
the SDK, beside the agents that use it. Provider SDKs are optional extras, imported only by
their adapters."""
