# Outbound replies: processor_fn (and the reconciler, for a reply that got
# stuck) enqueues one task per reply; Cloud Tasks calls sender_fn with an
# OIDC token of the tasks invoker.
#
# Rate: Twilio's default WhatsApp throughput is 80 messages per second per
# sender. The queue dispatches at most 20 per second and 20 at once by
# default, a quarter of that, leaving room for retries and for anything else
# sending from the same number; raise both variables (and
# twilio_sender_mps_limit, once Twilio has raised it) when traffic needs it.
#
# Retries: sender_fn gives up by itself after SEND_MAX_ATTEMPTS real Twilio
# failures (it records the failure and answers 2xx), and answers 503 to defer
# a reply whose predecessor is not sent yet. Those deferrals are cheap but
# can be many, so a task needs many attempts; unlimited attempts (-1) would
# let a stuck task retry forever. Cloud Tasks stops only when BOTH
# max_attempts and max_retry_duration are used up: with backoff capped at
# 10 s, 100 attempts take about a quarter of an hour, so the effective bound
# is max_retry_duration = 24 h, WhatsApp's customer-service window, after
# which a reply could not be delivered anyway.
resource "google_cloud_tasks_queue" "outbound" {
  project  = var.project_id
  name     = var.tasks_queue
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.tasks_max_dispatches_per_second
    max_concurrent_dispatches = var.tasks_max_concurrent_dispatches
  }

  retry_config {
    max_attempts       = var.tasks_max_attempts
    max_retry_duration = "${var.tasks_max_retry_duration_seconds}s"
    min_backoff        = "0.2s"
    max_backoff        = "10s"
    max_doublings      = 5
  }

  stackdriver_logging_config {
    sampling_ratio = 0.1
  }

  lifecycle {
    precondition {
      condition     = var.tasks_max_dispatches_per_second <= var.twilio_sender_mps_limit
      error_message = "tasks_max_dispatches_per_second must not exceed twilio_sender_mps_limit (Twilio's throughput for our sender)."
    }
  }

  depends_on = [google_project_service.enabled]
}

# processor_fn and the reconciler may add tasks to this queue only.
resource "google_cloud_tasks_queue_iam_member" "enqueuer" {
  for_each = {
    processor  = google_service_account.identity["processor"].member
    reconciler = google_service_account.identity["reconciler"].member
    # Hand-offs: finishing reply n creates the task of reply n + 1 (docs/decisions/0008-liveness.md).
    sender = google_service_account.identity["sender"].member
    # The outbound API creates the send task of a business-initiated message.
    outbound = google_service_account.identity["outbound"].member
    # The inbox creates the send task of a person's reply.
    inbox = google_service_account.identity["inbox"].member
  }

  project  = var.project_id
  location = google_cloud_tasks_queue.outbound.location
  name     = google_cloud_tasks_queue.outbound.name
  role     = "roles/cloudtasks.enqueuer"
  member   = each.value
}

# Same binding, new address (see the moved block in identities.tf).
moved {
  from = google_cloud_tasks_queue_iam_member.processor_enqueuer
  to   = google_cloud_tasks_queue_iam_member.enqueuer["processor"]
}
