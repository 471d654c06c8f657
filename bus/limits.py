"""Size limits, checked in the SDK first and enforced by the scripts.

The Lua side (``lua/includes/limits.lua``) is the authority; these copies only let the
SDK fail before a round trip. ``tests/test_registry.py`` keeps the two equal.
"""

from typing import Final

STATE_BYTES: Final = 1_048_576
PAYLOAD_BYTES: Final = 262_144
PATCH_OPS: Final = 256
PATH_DEPTH: Final = 32
TITLE_BYTES: Final = 1024
TEXT_BYTES: Final = 65_536
AGENTS: Final = 64
DEPENDS_ON: Final = 256
JSON_DEPTH: Final = 64
"""Deepest nesting of a stored JSON value, counting the path it is stored at."""
ATTACHMENT_BYTES: Final = 1_048_576
"""Largest inline attachment content (base64 text), RFC-0005."""
BATCH: Final = 1000
"""Most fields one script command writes at once."""
PAGE_MAX: Final = 1000
"""Largest page a list call returns."""
FILTER_SCAN: Final = 10_000
"""Most entries one filtered page reads before it returns what it found and a cursor."""
DEPENDENTS: Final = 1000
"""Most intents that may depend on one intent (RFC-0002)."""
CASCADE: Final = 2000
"""Most intents one status change may move (unblocked, abandoned by policy or cascade):
more than an intent's dependents, so that a completion can always unblock them all."""
CHILDREN: Final = 10_000
"""Most children of one parent (bounds the abandonment cascade's read of them)."""
PLAN_READS: Final = 100_000
"""Most dependents and children one status change's cascade plan reads."""
GRAPH_WALK: Final = 10_000
"""Most intents the cycle check of ``add_dependency`` visits."""
PORTFOLIO_MEMBERS: Final = 1000
"""Most member intents of one portfolio (bounds every read and sum over its members)."""
PORTFOLIOS_PER_INTENT: Final = 64
"""Most portfolios one intent belongs to (bounds the syncs after each of its moves)."""
PORTFOLIO_LINKS: Final = 256
"""Most membership tokens an intent keeps, removals included (see lua/link_portfolio.lua)."""
PORTFOLIO_JSON_BYTES: Final = 65_536
"""Largest governance_policy or metadata JSON text of a portfolio."""

# -- agent memory (RFC-0015): mirrors of lua/includes/memory.lua -------------------------
MEMORY_VALUE_BYTES: Final = 65_536
"""Largest value of one memory entry, as JSON text."""
MEMORY_KEY_BYTES: Final = 256
"""Longest memory key (one line of UTF-8, no control characters)."""
MEMORY_TAGS: Final = 16
"""Most tags on one entry."""
MEMORY_TAG_BYTES: Final = 64
"""Longest tag."""
MEMORY_TOKENS: Final = 64
"""Most keyword tokens one entry's key and value put in the recall index (the first ones
in reading order; the rest of a long value is stored, not indexed)."""
MEMORY_TAG_TOKENS: Final = 32
"""Most keyword tokens one entry's tags put in the recall index."""
MEMORY_TOKEN_BYTES: Final = 64
"""Longest keyword token (longer words are not indexed)."""
MEMORY_ENTRIES: Final = 10_000
"""Most live entries one agent's memory holds; expired ones do not count."""
MEMORY_PURGE: Final = 16
"""Most expired entries one memory write removes, with their index entries."""
MEMORY_TTL_MS: Final = 31_536_000_000
"""Longest time to live of an entry: 365 days."""
MEMORY_QUERY_TOKENS: Final = 16
"""Most distinct keyword tokens of one recall query that are looked up."""
MEMORY_RECALL_SCAN: Final = 200
"""Index entries one recall reads per query token and memory type (the most recently
updated entries holding that token)."""
MEMORY_RECALL_MAX: Final = 100
"""Largest ``limit`` of one recall."""
MEMORY_PAGE: Final = 200
"""Largest page of ``list_memory`` (values are returned, so pages are smaller than
``PAGE_MAX``)."""
MEMORY_LIST_SCAN: Final = 1000
"""Most index entries one ``list_memory`` page reads while skipping expired entries and
filtering by type, before it returns what it found and a cursor."""
