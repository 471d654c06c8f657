-- Event types that only oibus's own scripts record; log_event refuses them so that an
-- audit record of a lifecycle, state, lease, cost or graph change cannot be forged.
-- Mirrors bus/events.py RESERVED; a test keeps the two equal.
local RESERVED_EVENT_TYPES = {
  intent_created = true, state_patched = true, status_changed = true,
  agent_assigned = true, agent_unassigned = true,
  lease_acquired = true, lease_renewed = true, lease_released = true,
  lease_expired = true, lease_revoked = true,
  arbitration_requested = true, arbitration_resolved = true, decision_recorded = true,
  delegation_created = true, delegation_revoked = true,
  attachment_added = true, attachment_deleted = true,
  cost_recorded = true, budget_alert = true, budget_exceeded = true,
  retry_policy_set = true, failure_recorded = true, retry_scheduled = true,
  retry_dispatched = true,
  retries_exhausted = true, fallback_triggered = true,
  dependency_added = true, dependency_removed = true, dependency_failed = true,
  subscription_created = true, subscription_removed = true,
  portfolio_created = true, added_to_portfolio = true, removed_from_portfolio = true,
  portfolio_status_changed = true,
  ["portfolio.member_suspended"] = true, ["portfolio.member_resumed"] = true,
}
