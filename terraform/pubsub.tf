# Inbound path: webhook_fn publishes (ordering key = sender) to the inbound
# topic; a push subscription delivers to processor_fn in order per sender.
# After max_delivery_attempts failed deliveries a message moves to the
# dead-letter topic, which has two subscriptions:
#   - a push subscription to processor_fn, which records the message as
#     dead-lettered in Firestore (it knows it by the subscription name);
#   - a pull "hold" subscription that nobody consumes: it keeps every
#     dead-lettered message for inspection or replay, and the alert in
#     monitoring.tf fires while it is not empty.

resource "google_pubsub_topic" "inbound" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption is adequate: messages are transient (acked within seconds) and the same text is stored in Firestore under Google-managed keys; a customer-managed key adds a KMS key lifecycle this project does not need.
  project = var.project_id
  name    = var.inbound_topic

  message_retention_duration = "86400s"

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Same reasoning as the inbound topic: Google-managed encryption, no customer-managed key.
  project = var.project_id
  name    = local.dead_letter_topic

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_subscription" "processor" {
  project = var.project_id
  name    = local.processor_push
  topic   = google_pubsub_topic.inbound.id

  # Replies must follow the order in which a user wrote; webhook_fn publishes
  # with the sender as ordering key.
  enable_message_ordering = true

  # For push, the ack deadline is also the HTTP timeout of each delivery and
  # the processor's lease on a message, so it must outlast the whole model
  # call (see the preconditions below).
  ack_deadline_seconds       = var.processor_ack_deadline_seconds
  message_retention_duration = "${local.inbound_retention_seconds}s"

  push_config {
    push_endpoint = local.processor_push_endpoint

    oidc_token {
      service_account_email = google_service_account.identity["pubsub_push"].email
      audience              = local.processor_audience
    }
  }

  retry_policy {
    minimum_backoff = "${var.push_min_backoff_seconds}s"
    maximum_backoff = "${var.push_max_backoff_seconds}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  lifecycle {
    # MODEL_BUDGET_SECONDS bounds the whole model call, the SDK's retries
    # included; the lease (PROCESSING_LEASE_SECONDS = the ack deadline) must
    # outlast it, or Pub/Sub redelivers, and another instance takes the
    # message over, while the first is still waiting for the model.
    precondition {
      condition     = var.model_budget_seconds < var.processor_ack_deadline_seconds
      error_message = "model_budget_seconds must be below processor_ack_deadline_seconds (the processing lease), or a message is redelivered while the model is still answering it."
    }
    # shared/config.py refuses to start otherwise: a message must not be
    # closed as failed while a processor may hold its lease or a Twilio call
    # (two timeouts plus 5 s) may still be under way.
    precondition {
      condition     = var.liveness_seconds > var.processor_ack_deadline_seconds + 2 * var.twilio_timeout_seconds + 5
      error_message = "liveness_seconds must exceed processor_ack_deadline_seconds + 2 * twilio_timeout_seconds + 5 (the lease plus a Twilio call in flight); the services refuse to start otherwise."
    }
    # A redelivery can come as late as the subscription keeps the message;
    # the processor must still remember the message id then.
    precondition {
      condition     = var.dedupe_horizon_seconds >= local.inbound_retention_seconds
      error_message = "dedupe_horizon_seconds must be at least the inbound subscription's message retention (604800 s), or a late redelivery is answered twice."
    }
    precondition {
      condition     = var.push_min_backoff_seconds <= var.push_max_backoff_seconds
      error_message = "push_min_backoff_seconds must not exceed push_max_backoff_seconds."
    }
  }

  depends_on = [google_cloud_run_v2_service.service]
}

# Dead-lettered messages pushed to processor_fn so it records them in
# Firestore (failed_messages). Its own OIDC token, same push identity.
resource "google_pubsub_subscription" "dead_letter_push" {
  project = var.project_id
  name    = var.dead_letter_subscription
  topic   = google_pubsub_topic.dead_letter.id

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = local.processor_push_endpoint

    oidc_token {
      service_account_email = google_service_account.identity["pubsub_push"].email
      audience              = local.processor_audience
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [google_cloud_run_v2_service.service]
}

# Holds everything dead-lettered for inspection and replay; never consumed
# by a service. An operator pulls from it (docs/deploy.md) and acks what has
# been handled.
resource "google_pubsub_subscription" "dead_letter_hold" {
  project = var.project_id
  name    = local.dead_letter_hold
  topic   = google_pubsub_topic.dead_letter.id

  ack_deadline_seconds       = 60
  message_retention_duration = "${var.dead_letter_retention_days * 86400}s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}

# The Pub/Sub service agent forwards undeliverable messages: it must publish
# to the dead-letter topic and acknowledge them on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_source_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.processor.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# webhook_fn may publish to the inbound topic and nowhere else.
resource "google_pubsub_topic_iam_member" "webhook_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.inbound.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.identity["webhook"].member
}

# The inbox's operators replay dead letters as `make replay` does
# (shared/ops/replay.py): pull and acknowledge on the hold subscription,
# publish again to the inbound topic. Nothing else of Pub/Sub.
resource "google_pubsub_subscription_iam_member" "inbox_replay_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.dead_letter_hold.name
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.identity["inbox"].member
}

resource "google_pubsub_topic_iam_member" "inbox_replay_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.inbound.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.identity["inbox"].member
}
