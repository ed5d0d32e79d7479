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

# ------------------------------------------------------------- send lanes ---
# One queue per business number (docs/decisions/0022-send-queue-per-number.md):
# a campaign of one business waits in its own lane, not in front of another
# business's replies. profiles-apply assigns each number a lane, keeps it
# across applies, and sets the lane's rate to the business's
# send_rate_per_second (UpdateQueue), so Terraform makes the lanes and then
# leaves their rate alone. A number without a lane (more businesses than
# lanes, or none applied yet) sends through the queue above.
#
# A fixed set made here rather than queues made at apply time: Cloud Tasks
# does not evaluate IAM conditions on resource names, so an apply that could
# create queues could create (and administer) any queue of the project. Here
# every grant is on named queues. Idle queues cost nothing.
resource "google_cloud_tasks_queue" "lane" {
  for_each = toset(var.send_lanes)

  project  = var.project_id
  name     = each.key
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.send_rate_per_second
    max_concurrent_dispatches = var.tasks_max_concurrent_dispatches
  }

  # The same retries as the shared queue: a reply is retried alike in either.
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
    # profiles-apply owns each lane's rate once its business is assigned.
    ignore_changes = [rate_limits]
    precondition {
      condition     = var.send_rate_per_second <= var.twilio_sender_mps_limit
      error_message = "send_rate_per_second must not exceed twilio_sender_mps_limit (Twilio's throughput per sender)."
    }
  }

  depends_on = [google_project_service.enabled]
}

# Everyone who adds send tasks to the shared queue adds them to the lanes.
resource "google_cloud_tasks_queue_iam_binding" "lane_enqueuers" {
  for_each = toset(var.send_lanes)

  project  = var.project_id
  location = google_cloud_tasks_queue.lane[each.key].location
  name     = google_cloud_tasks_queue.lane[each.key].name
  role     = "roles/cloudtasks.enqueuer"
  members = [
    google_service_account.identity["processor"].member,
    google_service_account.identity["reconciler"].member,
    google_service_account.identity["sender"].member,
    google_service_account.identity["outbound"].member,
    google_service_account.identity["inbox"].member,
  ]
}

# The profiles build sets each lane's rate: queue admin on the lanes only,
# never on the shared queue (whose rate Terraform keeps) nor project-wide.
# roles/cloudtasks.queueAdmin is the narrowest predefined role with
# cloudtasks.queues.update; a custom role of get and update alone would make
# the deployer a role administrator.
resource "google_cloud_tasks_queue_iam_member" "lane_rate_setter" {
  for_each = toset(var.send_lanes)

  project  = var.project_id
  location = google_cloud_tasks_queue.lane[each.key].location
  name     = google_cloud_tasks_queue.lane[each.key].name
  role     = "roles/cloudtasks.queueAdmin"
  member   = data.google_service_account.profiles.member
}
