# Two alerts, both quiet in normal operation:
#   - a message is waiting in the dead-letter hold subscription (processor_fn
#     failed it max_delivery_attempts times);
#   - a reply could not be sent (the structured log line with
#     "event": "send_failed" of sender_fn, "stalled" of the reconciler), matched in the
#     logs directly.
# notification_channels may be empty: the incidents still open in Cloud
# Monitoring, they just notify nobody.

resource "google_monitoring_alert_policy" "dead_letter_waiting" {
  project      = var.project_id
  display_name = "[${var.environment}] WhatsApp assistant: dead-lettered messages waiting"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "Undelivered messages in ${google_pubsub_subscription.dead_letter_hold.name}"

    condition_threshold {
      filter = join(" AND ", [
        "resource.type = \"pubsub_subscription\"",
        "resource.labels.subscription_id = \"${google_pubsub_subscription.dead_letter_hold.name}\"",
        "metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\"",
      ])
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "60s"

      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "Dead-lettered WhatsApp messages in ${var.environment}"
    content   = <<-EOT
      Runbook: find the cause in processor_fn's logs and fix it, then `make replay` the held messages (docs/deploy.md, "Dead letters"); the alert closes when the hold subscription is empty.

      Pub/Sub gave up delivering at least one inbound message to processor_fn
      after ${var.max_delivery_attempts} attempts. processor_fn recorded it in
      Firestore (collection failed_messages); a copy waits in the pull
      subscription `${google_pubsub_subscription.dead_letter_hold.name}`.

      Look at processor_fn's logs for the cause, fix it, then inspect or
      replay the messages as described in docs/deploy.md, "Dead letters".
      The alert closes when the subscription is empty (ack what you handled).
    EOT
  }

  notification_channels = var.notification_channels

  depends_on = [google_project_service.enabled]
}

# Counts send_failed lines, for charts and reports. No alert depends on it:
# an alert on a user metric created in the same apply fails with "Cannot
# find metric(s)" until the metric has propagated, and the provider does not
# retry (hashicorp/terraform-provider-google#11102).
resource "google_logging_metric" "send_failed" {
  project     = var.project_id
  name        = "${var.name_prefix}-send-failed"
  description = "Replies that could not be sent: sender_fn gave up after SEND_MAX_ATTEMPTS Twilio failures, or the reconciler recorded one."
  filter      = local.send_failed_filter

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "WhatsApp replies that could not be sent"
  }

  depends_on = [google_project_service.enabled]
}

locals {
  # By service name, not by the service resource: the alert can exist before
  # the services do. The reconciler records failures too.
  send_failed_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "(resource.labels.service_name=\"${local.service_names.sender}\" OR resource.labels.service_name=\"${local.service_names.reconciler}\")",
    "(jsonPayload.event=\"send_failed\" OR jsonPayload.event=\"stalled\")",
  ])
}

# A log-match condition reads the log entries themselves, so the alert needs
# no metric and is created in the same apply as everything else.
resource "google_monitoring_alert_policy" "send_failed" {
  project      = var.project_id
  display_name = "[${var.environment}] WhatsApp assistant: replies could not be sent"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "sender_fn or the reconciler logged send_failed"

    condition_matched_log {
      filter = local.send_failed_filter
    }
  }

  # Log-match policies require a notification rate limit: at most one
  # notification per 5 minutes, however many replies fail.
  alert_strategy {
    notification_rate_limit {
      period = "300s"
    }
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "WhatsApp replies failing in ${var.environment}"
    content   = <<-EOT
      Runbook: read Twilio's error code in the `send_failed` line, check the Twilio console (sender status, balance, template approval) and the TWILIO_* settings, then answer the affected users from `make failures` if it matters.

      sender_fn (or the reconciler, for a reply stuck past its deadline) gave
      up on at least one reply and recorded it in Firestore
      (failed_messages). The log line ("event": "send_failed") carries
      Twilio's error code when there is one: check the Twilio console (sender
      status, balance, template approval) and the TWILIO_* settings.
      sender_fn gives up after ${var.send_max_attempts} Twilio failures.
    EOT
  }

  notification_channels = var.notification_channels

  depends_on = [google_project_service.enabled]
}
