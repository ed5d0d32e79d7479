# Two alerts, both quiet in normal operation:
#   - a message is waiting in the dead-letter hold subscription (processor_fn
#     failed it max_delivery_attempts times);
#   - sender_fn gave up on a reply (its structured log line with
#     "event": "send_failed").
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
      Pub/Sub gave up delivering at least one inbound message to processor_fn
      after ${var.max_delivery_attempts} attempts. processor_fn recorded it in
      Firestore (collection failed_messages); a copy waits in the pull
      subscription `${google_pubsub_subscription.dead_letter_hold.name}`.

      Look at processor_fn's logs for the cause, fix it, then inspect or
      replay the messages as described in README.md, "Deploy", "Dead letters".
      The alert closes when the subscription is empty (ack what you handled).
    EOT
  }

  notification_channels = var.notification_channels

  depends_on = [google_project_service.enabled]
}

resource "google_logging_metric" "send_failed" {
  project     = var.project_id
  name        = "${var.name_prefix}-send-failed"
  description = "Replies sender_fn gave up on after SEND_MAX_ATTEMPTS Twilio failures."
  filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${google_cloud_run_v2_service.service["sender"].name}\"",
    "jsonPayload.event=\"send_failed\"",
  ])

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "WhatsApp replies that could not be sent"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "send_failed" {
  project      = var.project_id
  display_name = "[${var.environment}] WhatsApp assistant: replies could not be sent"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "sender_fn logged send_failed"

    condition_threshold {
      filter = join(" AND ", [
        "resource.type = \"cloud_run_revision\"",
        "metric.type = \"logging.googleapis.com/user/${google_logging_metric.send_failed.name}\"",
      ])
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
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
    subject   = "WhatsApp replies failing in ${var.environment}"
    content   = <<-EOT
      sender_fn gave up on at least one reply after ${var.send_max_attempts}
      Twilio failures and recorded it in Firestore (failed_messages). Its log
      line ("event": "send_failed") carries Twilio's error code: check the
      Twilio console (sender status, balance, template approval) and
      TWILIO_* settings.
    EOT
  }

  notification_channels = var.notification_channels
}
