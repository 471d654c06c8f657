"""Key names: how an intent id leads to every key of it, with no lookup.

The hash-tag unit is a *partition* of the namespace, ``{ns:p}``. An intent's partition is
``crc32(group) % partitions``, where the group is the part of its id before the first
``.`` (or the whole id). So:

- ids without a dot spread uniformly over the partitions: throughput spreads over that
  many slots (and nodes, on a cluster);
- ids sharing a group (``g.child-1``, ``g.child-2``, and ``g`` itself) share a partition,
  so a graph or portfolio whose ids share a group can be changed by one script;
- every per-partition index (list pages, due-time sets, bus stream) lives beside the
  intents it indexes, so one script maintains it atomically, and a global page is a merge
  of ``partitions`` small reads: its cost does not grow with the number of intents.

``docs/keyspace.md`` lists every key, including those later capabilities fill in.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from redis.crc import key_slot as _redis_key_slot

from oibus.bus.errors import ValidationError
from oibus.bus.statuses import IntentStatus

__all__ = ["DEFAULT_NAMESPACE", "DEFAULT_PARTITIONS", "Keyspace", "group_of", "key_slot"]

DEFAULT_NAMESPACE: Final = "oi"
DEFAULT_PARTITIONS: Final = 16

_ID = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,127}")
_NAMESPACE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_STATUSES: Final = tuple(IntentStatus)


def check_id(value: object, field: str = "intent_id") -> str:
    """Ids go into key names, so their alphabet is closed: URL-safe, no braces or colons."""
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise ValidationError(
            f"{field} must be 1-128 characters of A-Z a-z 0-9 . _ ~ - (not starting with .)",
            field=field,
        )
    return value


def group_of(intent_id: str) -> str:
    """The colocation group: the id up to its first dot."""
    return intent_id.split(".", 1)[0]


def encode_segment(value: str) -> str:
    """Free text (creator or agent names) inside a key: escape what would be ambiguous."""
    return value.replace("%", "%25").replace(":", "%3A").replace("{", "%7B").replace("}", "%7D")


@dataclass(frozen=True, slots=True)
class Keyspace:
    """Builds every key of one namespace. Pure: no I/O, cheap, safe to share."""

    namespace: str = DEFAULT_NAMESPACE
    partitions: int = DEFAULT_PARTITIONS

    def __post_init__(self) -> None:
        if _NAMESPACE.fullmatch(self.namespace) is None:
            raise ValidationError("namespace must be 1-32 of A-Z a-z 0-9 _ -", field="namespace")
        if not 1 <= self.partitions <= 1024:
            raise ValidationError("partitions must be from 1 to 1024", field="partitions")

    # -- partitions ---------------------------------------------------------------------
    def partition(self, intent_id: str) -> int:
        return zlib.crc32(group_of(intent_id).encode()) % self.partitions

    def tag(self, partition: int) -> str:
        return f"{{{self.namespace}:{partition}}}"

    def tag_of(self, intent_id: str) -> str:
        return _tag_of(self.namespace, self.partitions, intent_id)

    def intent_keys(self, intent_id: str) -> tuple[str, str, str, str]:
        """intent, state, events and the partition's bus: what every mutation touches."""
        t = _tag_of(self.namespace, self.partitions, intent_id)
        return f"{t}:i:{intent_id}", f"{t}:s:{intent_id}", f"{t}:e:{intent_id}", f"{t}:bus"

    # -- one intent ---------------------------------------------------------------------
    def intent(self, intent_id: str) -> str:
        return f"{self.tag_of(intent_id)}:i:{intent_id}"

    def state(self, intent_id: str) -> str:
        return f"{self.tag_of(intent_id)}:s:{intent_id}"

    def events(self, intent_id: str) -> str:
        return f"{self.tag_of(intent_id)}:e:{intent_id}"

    def leases(self, intent_id: str) -> str:
        return f"{self.tag_of(intent_id)}:l:{intent_id}"

    def lease_history(self, intent_id: str) -> str:
        return f"{self.tag_of(intent_id)}:lh:{intent_id}"

    def costs(self, intent_id: str) -> str:
        """Cost records (stream), RFC-0009."""
        return f"{self.tag_of(intent_id)}:c:{intent_id}"

    def cost_summary(self, intent_id: str) -> str:
        """Running cost totals (hash), kept by the recording script."""
        return f"{self.tag_of(intent_id)}:cs:{intent_id}"

    def retry_policy(self, intent_id: str) -> str:
        """The retry policy (hash), RFC-0010."""
        return f"{self.tag_of(intent_id)}:rp:{intent_id}"

    def failures(self, intent_id: str) -> str:
        """Failure records (stream), RFC-0010."""
        return f"{self.tag_of(intent_id)}:fl:{intent_id}"

    def arbitrations(self, intent_id: str) -> str:
        """Arbitration requests by id (hash), RFC-0003 governance."""
        return f"{self.tag_of(intent_id)}:ar:{intent_id}"

    def decisions(self, intent_id: str) -> str:
        """Decision records (stream): immutable, appended only."""
        return f"{self.tag_of(intent_id)}:dr:{intent_id}"

    def attachments(self, intent_id: str) -> str:
        """Attachment metadata by attachment id (hash), RFC-0005."""
        return f"{self.tag_of(intent_id)}:at:{intent_id}"

    def attachment_content(self, intent_id: str) -> str:
        """Inline attachment content by attachment id (hash)."""
        return f"{self.tag_of(intent_id)}:ac:{intent_id}"

    def llm_conversation(self, intent_id: str, agent_id: str) -> str:
        """String: the conversation of an LLM agent's ``think()`` on the intent, written
        once per completed tool round so a replica resumes a killed agent's loop; under
        the intent's tag, so it lives on the intent's node (sdk/llm/conversation.py)."""
        return f"{self.tag_of(intent_id)}:llm:{intent_id}:{encode_segment(agent_id)}"

    def children(self, intent_id: str) -> str:
        """The intent's children (the parent index of its partition)."""
        return f"{self.tag_of(intent_id)}:x:p:{intent_id}"

    # -- per partition ------------------------------------------------------------------
    def due_retries(self, partition: int) -> str:
        """Retry due times (zset, µs → intent id): what the daemon's retry loop waits on."""
        return f"{self.tag(partition)}:due:retry"

    def due_leases(self, partition: int) -> str:
        """Lease expiry times: what the daemon sweeps to record lease_expired."""
        return f"{self.tag(partition)}:due:lease"

    def bus(self, partition: int) -> str:
        return f"{self.tag(partition)}:bus"

    def index_all(self, partition: int) -> str:
        return f"{self.tag(partition)}:x:all"

    def index_status(self, partition: int, status: str) -> str:
        return f"{self.tag(partition)}:x:s:{status}"

    def index_creator(self, partition: int, created_by: str) -> str:
        return f"{self.tag(partition)}:x:c:{encode_segment(created_by)}"

    def index_parent(self, partition: int, parent_id: str) -> str:
        return f"{self.tag(partition)}:x:p:{parent_id}"

    def status_indexes(self, partition: int) -> list[str]:
        """One key per status, in lifecycle order: what set_status needs to move an entry."""
        return [self.index_status(partition, s) for s in _STATUSES]

    def graph_hashes(self, partition: int) -> list[str]:
        """The partition's graph hashes (status mirror, unmet counts, children counts by
        parent and status, dependencies, dependents, parents); see lua/includes/graph.lua."""
        t = self.tag(partition)
        return [f"{t}:g:{name}" for name in ("st", "um", "ag", "dep", "rd", "par")]

    def graph_tail(self, partition: int) -> list[str]:
        """What every status-changing graph script declares after its own keys: the bus,
        the six status indexes and the graph hashes (``graph_ctx`` in graph.lua)."""
        return [self.bus(partition), *self.status_indexes(partition), *self.graph_hashes(partition)]

    # -- namespace-wide -----------------------------------------------------------------
    @property
    def delegations(self) -> str:
        """Delegation contracts by id (hash): namespace-wide, not tied to one intent."""
        return f"{{{self.namespace}}}:dg"

    @property
    def delegation_events(self) -> str:
        """The log of delegation_created / delegation_revoked (stream)."""
        return f"{{{self.namespace}}}:dge"

    @property
    def meta(self) -> str:
        """Bus configuration (partition count, schema), checked by every client."""
        return f"{{{self.namespace}}}:meta"

    # -- portfolios (RFC-0004/0007): a portfolio id partitions like an intent id ----------
    def portfolio(self, portfolio_id: str) -> str:
        """The portfolio record, its counts by member status and its event seq (hash)."""
        return f"{self.tag_of(portfolio_id)}:pf:{portfolio_id}"

    def portfolio_members(self, portfolio_id: str) -> str:
        """Member intent ids by priority (zset)."""
        return f"{self.tag_of(portfolio_id)}:pm:{portfolio_id}"

    def portfolio_roster(self, portfolio_id: str) -> str:
        """Member intent id -> role, priority, last applied status and version (hash)."""
        return f"{self.tag_of(portfolio_id)}:pr:{portfolio_id}"

    def portfolio_events(self, portfolio_id: str) -> str:
        """The portfolio's own event log (stream)."""
        return f"{self.tag_of(portfolio_id)}:pe:{portfolio_id}"

    def index_portfolios(self, partition: int, status: str | None = None) -> str:
        """The partition's portfolios by creation (zset, members as in x:all): all of
        them, or those in one status."""
        if status is None:
            return f"{self.tag(partition)}:x:pf"
        return f"{self.tag(partition)}:x:pf:{status}"

    # -- subscriptions and webhooks (RFC-0006) -------------------------------------------
    @property
    def api_keys(self) -> str:
        """The HTTP server's API keys (hash): SHA-256 of the key -> record JSON (principal,
        role, label, created_at). The key itself is never stored."""
        return f"{{{self.namespace}}}:keys"

    def ui_session(self, token_digest: str) -> str:
        """A dashboard sign-in (string with a TTL): SHA-256 of the session token in the
        browser's cookie -> the digest of the API key it signed in with. The cookie never
        holds the key, and the key's record is looked up on every page (revoked: out)."""
        return f"{{{self.namespace}}}:ui:s:{token_digest}"

    @property
    def subscriptions(self) -> str:
        """Subscription records by id (hash, JSON values): namespace-wide, because a global
        subscription belongs to no partition and matching must find every scope's
        subscriptions in a bounded number of reads."""
        return f"{{{self.namespace}}}:subs"

    def subscription_index(self, intent_id: str | None, portfolio_id: str | None) -> str:
        """The ids of one scope's subscriptions (set): an intent's, a portfolio's, or the
        global ones (both None). Same tag as the records, so one script keeps both."""
        if intent_id is not None:
            return f"{{{self.namespace}}}:subs:x:i:{intent_id}"
        if portfolio_id is not None:
            return f"{{{self.namespace}}}:subs:x:p:{portfolio_id}"
        return f"{{{self.namespace}}}:subs:x:g"

    @property
    def bus_dead_letters(self) -> str:
        """Bus entries the daemons failed to handle too often (stream), with the error."""
        return f"{{{self.namespace}}}:dlq:bus"

    @property
    def daemons(self) -> str:
        """Daemon id -> last heartbeat (zset, ms): the daemons that ever ran, for --check."""
        return f"{{{self.namespace}}}:daemons"

    def daemon_heartbeat(self, daemon_id: str) -> str:
        """A daemon's liveness (string with a TTL): while it exists, its work is its own."""
        return f"{{{self.namespace}}}:daemon:{daemon_id}"

    def consumer_heartbeat(self, group: str, consumer: str) -> str:
        """An event consumer's liveness (string with a TTL): while it exists, the entries
        it holds pending in ``group`` are its own; once it expires a live consumer of the
        same group takes them over (docs/agents.md)."""
        return f"{{{self.namespace}}}:cons:{encode_segment(group)}:{encode_segment(consumer)}"

    @property
    def event_dead_letters(self) -> str:
        """Entries of SDK consumer groups delivered too often without an ack (stream)."""
        return f"{{{self.namespace}}}:dlq:events"

    @property
    def dead_letters(self) -> str:
        """Deliveries given up on, with their last error (stream), for list and replay."""
        return f"{{{self.namespace}}}:dlq"

    @property
    def webhook_due(self) -> str:
        """Subscription id -> when its delivery queue next needs a worker (zset, µs)."""
        return f"{{{self.namespace}}}:wh:due"

    def webhook_tag(self, subscription_id: str) -> str:
        """Each subscription's delivery keys share a tag of their own, so that webhook
        traffic spreads over the cluster instead of loading the namespace's slot."""
        return f"{{{self.namespace}:w:{subscription_id}}}"

    def webhook_queue(self, subscription_id: str) -> str:
        """Delivery jobs of one subscription, in event order (stream + consumer group)."""
        return f"{self.webhook_tag(subscription_id)}:q"

    def webhook_state(self, subscription_id: str) -> str:
        """Retry state of the queue's head job: attempts, first attempt, next attempt, last
        error (hash)."""
        return f"{self.webhook_tag(subscription_id)}:st"

    def webhook_lock(self, subscription_id: str) -> str:
        """Which consumer works on the queue now (string with a TTL): one at a time, so
        deliveries of one subscription keep event order across daemons."""
        return f"{self.webhook_tag(subscription_id)}:lk"

    def webhook_marker(self, subscription_id: str, event_key: str) -> str:
        """Set when the event was queued for the subscription (string with a TTL): makes a
        repeated match of the same bus entry queue nothing."""
        return f"{self.webhook_tag(subscription_id)}:m:{event_key}"

    # -- agent memory (RFC-0015): one hash tag per agent ---------------------------------
    def memory_tag(self, agent_id: str) -> str:
        """Every key of one agent's memory shares this tag, so one script changes an entry
        and all its index entries; agents spread over the cluster by name. The agent id is
        free text, escaped (``encode_segment``) so that it can never close the tag."""
        return f"{{{self.namespace}:m:{encode_segment(agent_id)}}}"

    def memory_keys(self, agent_id: str) -> tuple[str, str, str, str]:
        """What every memory script declares, in this order: the entries' metadata
        (hash), their values (hash), their expiry times (zset) and the index (zset)."""
        t = self.memory_tag(agent_id)
        return f"{t}:meta", f"{t}:val", f"{t}:exp", f"{t}:idx"


@lru_cache(maxsize=65_536)
def _tag_of(namespace: str, partitions: int, intent_id: str) -> str:
    """Hot path: every call on an intent needs its tag; ids repeat, so remember them."""
    return f"{{{namespace}:{zlib.crc32(group_of(intent_id).encode()) % partitions}}}"


def key_slot(key: str) -> int:
    """The Redis Cluster slot of a key, honouring the first non-empty ``{hash tag}``.
    redis-py's pure CRC16 (``redis.crc``, no connection code) is the one function ``bus``
    takes from it: the cluster client routes with it, so the guard and the client agree."""
    return _redis_key_slot(key.encode())
