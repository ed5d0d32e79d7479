# Firestore in Native mode. Conversations, failure records and the dedupe
# records of seen message ids expire through TTL policies on their `expireAt`
# field; the application decides each document's expiry
# (CONVERSATION_TTL_SECONDS for conversations, a longer retention for
# failed_messages, DEDUPE_HORIZON_SECONDS for seen_messages), Firestore
# deletes it within about a day after that time, at no query cost.
resource "google_firestore_database" "main" {
  project                           = var.project_id
  name                              = "(default)"
  location_id                       = coalesce(var.firestore_location, var.region)
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "OPTIMISTIC"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.deletion_protection ? "ABANDON" : "DELETE"

  depends_on = [google_project_service.enabled]
}

# TTL on expireAt in conversations, failed_messages and seen_messages, and the usage counters
# (kept 400 days) and budget alert markers (40 days).
# Failure records outlive conversations (the application sets a later
# expireAt) so they can be inspected and replayed, but they still do not live
# forever; seen_messages only need to outlive a redelivery. The empty
# index_config exempts the field from single-field indexes: nothing queries
# it, and an index on an ever increasing timestamp is a write hotspot.
resource "google_firestore_field" "ttl" {
  for_each = toset(["conversations", "failed_messages", "seen_messages", "usage_counters", "budget_alerts"])

  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = each.key
  field      = "expireAt"

  index_config {}

  ttl_config {}
}

# The inbox's queries (shared/adapters/inbox_store.py, INDEXES): a
# business's conversations by last write (its list, and what changed since
# the last poll), and those the bot is paused for. Firestore needs a
# composite index for an equality on one field with an order or a range on
# another; the emulator does not, so tests/infra checks these against the code.
resource "google_firestore_index" "inbox" {
  for_each = {
    recent = { field = "updatedAt", order = "DESCENDING" }
    paused = { field = "pausedUntil", order = "ASCENDING" }
  }

  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = local.collections.conversations
  query_scope = "COLLECTION"

  fields {
    field_path = "business"
    order      = "ASCENDING"
  }

  fields {
    field_path = each.value.field
    order      = each.value.order
  }
}

# The usage counters' per-day increments (shared/adapters/usage_store.py): read by business and month,
# never queried by a day's field, so those are not indexed (each increment would write its index entries).
resource "google_firestore_field" "usage_days_unindexed" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = local.collections.usage
  field      = "days"

  index_config {}
}
