# The operator's view in Cloud Monitoring: one dashboard, and alerts that page
# for what hurts users (a message not finished in time, the model failing, a
# rising failure rate; dead letters are in monitoring.tf).
#
# Built-in metrics where they exist (Pub/Sub, Cloud Tasks, Cloud Run, the
# log-entry counts of Cloud Logging). What only our structured logs know
# (received, sent, failures by reason) comes from one log-based metric; only
# the dashboard reads it. No alert reads a log-based metric: created in the
# same apply, such an alert fails with "Cannot find metric(s)" and the
# provider does not retry (hashicorp/terraform-provider-google#11102). The
# alerts below use log-match conditions or built-in metrics, so one apply
# creates everything.

locals {
  # Failures the pipeline records for a message, as logged ("event" field).
  failure_events = ["send_failed", "stalled", "ai_failed", "dead_lettered", "process_failed"]

  functions_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "(${join(" OR ", [for name in values(local.service_names) : "resource.labels.service_name=\"${name}\""])})",
  ])

  stalled_filter   = "${local.functions_filter} AND jsonPayload.event=\"stalled\""
  ai_failed_filter = "${local.functions_filter} AND jsonPayload.event=\"ai_failed\""

  # ERROR log entries per minute across the six services (Cloud Logging's built-in
  # count) above which failures are "rising": every recorded failure logs one.
  failure_rate_per_minute = 5

  events_metric = "logging.googleapis.com/user/${google_logging_metric.events.name}"

  # Tokens and estimated cost per business and UTC day: a distribution's values summed (sum_from),
  # which takes MQL, as a filter chart cannot sum them.
  usage_chart = {
    for key, title in {
      tokens = "Model tokens per business (per UTC day)"
      cost   = "Estimated model cost per business (USD per UTC day)"
      } : key => {
      title = title
      xyChart = {
        dataSets = [{
          plotType = "STACKED_BAR"
          timeSeriesQuery = {
            timeSeriesQueryLanguage = join(" | ", [
              "fetch cloud_run_revision::logging.googleapis.com/user/${google_logging_metric.usage[key].name}",
              "align delta(1d)",
              "every 1d",
              "group_by [metric.business], [value: sum(sum_from(value))]",
            ])
          }
        }]
        yAxis = { label = key == "cost" ? "USD per day" : "tokens per day", scale = "LINEAR" }
      }
    }
  }

  # One chart of the log-based events metric: count per minute, split by a label.
  event_chart = {
    for key, spec in {
      inbound  = { title = "Inbound messages accepted (webhook_fn, per minute)", events = ["received"], by = "metric.label.business" }
      replies  = { title = "Replies sent (sender_fn, per minute)", events = ["sent"], by = "metric.label.business" }
      failures = { title = "Failures by reason (per minute)", events = local.failure_events, by = "metric.label.reason" }
      model    = { title = "Model errors: fallback replies sent (per minute)", events = ["ai_failed"], by = "metric.label.reason" }
      # Business tools (terraform/tools.tf): every request processor_fn sends a business, and those that failed.
      tools       = { title = "Tool calls per business (per minute)", events = ["tool_called", "tool_failed"], by = "metric.label.business" }
      tool_errors = { title = "Tool errors per business (per minute)", events = ["tool_failed"], by = "metric.label.business" }
      } : key => {
      title = spec.title
      xyChart = {
        chartOptions = { mode = "COLOR" }
        dataSets = [{
          # A chart of a filter (not MQL) names a grouped label ${metric.labels.KEY}.
          plotType       = key == "failures" ? "STACKED_BAR" : "LINE"
          legendTemplate = "$${metric.labels.${trimprefix(spec.by, "metric.label.")}}"
          timeSeriesQuery = {
            timeSeriesFilter = {
              filter = join(" AND ", [
                "metric.type=\"${local.events_metric}\"",
                "resource.type=\"cloud_run_revision\"",
                "(${join(" OR ", [for e in spec.events : "metric.label.event=\"${e}\""])})",
              ])
              aggregation = {
                alignmentPeriod    = "60s"
                perSeriesAligner   = "ALIGN_DELTA"
                crossSeriesReducer = "REDUCE_SUM"
                groupByFields      = [spec.by]
              }
            }
          }
        }]
        yAxis = { label = "per minute", scale = "LINEAR" }
      }
    }
  }
}

# Every structured log line with an "event", counted by event, reason and
# business (the latter empty until the log lines carry it). The dashboard
# splits it; failures by reason need no further metric.
resource "google_logging_metric" "events" {
  project     = var.project_id
  name        = "${var.name_prefix}-events"
  description = "Structured log lines of the WhatsApp assistant's services, by event, reason and business."
  filter      = "${local.functions_filter} AND jsonPayload.event:*"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "WhatsApp assistant events"

    labels {
      key         = "event"
      value_type  = "STRING"
      description = "The step's event: received, answered, sent, send_failed, stalled, ai_failed, dead_lettered, ..."
    }
    labels {
      key         = "reason"
      value_type  = "STRING"
      description = "Why a message failed or was refused, when the line says."
    }
    labels {
      key         = "business"
      value_type  = "STRING"
      description = "The business's WhatsApp address, when the line carries it."
    }
  }

  label_extractors = {
    event    = "EXTRACT(jsonPayload.event)"
    reason   = "EXTRACT(jsonPayload.reason)"
    business = "EXTRACT(jsonPayload.business)"
  }

  depends_on = [google_project_service.enabled]
}

# The model call's own time (retries and Retry-After waits included), from the
# processor's "answered" line; read by the dashboard only, like the events metric.
resource "google_logging_metric" "model_latency" {
  project     = var.project_id
  name        = "${var.name_prefix}-model-latency"
  description = "Time processor_fn spent on the model for one message (jsonPayload.model_ms of the answered line)."
  filter      = "${local.functions_filter} AND jsonPayload.event=\"answered\" AND jsonPayload.model_ms:*"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "ms"
    display_name = "WhatsApp assistant model latency"

    labels {
      key         = "business"
      value_type  = "STRING"
      description = "The business's WhatsApp address."
    }
  }

  value_extractor = "EXTRACT(jsonPayload.model_ms)"
  label_extractors = {
    business = "EXTRACT(jsonPayload.business)"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 32
      growth_factor      = 1.4
      scale              = 10
    }
  }

  depends_on = [google_project_service.enabled]
}

# Model usage per business (docs/decisions/0024-usage-and-budgets.md): the tokens and the estimated cost
# of each answer, from the processor's "answered" line; the dashboard sums them per day. Read by the
# dashboard only, like the metrics above.
resource "google_logging_metric" "usage" {
  for_each = {
    tokens = { field = "tokens", unit = "1", what = "Tokens an answer's model calls were billed for (prompt, completion, embeddings, transcription)" }
    cost   = { field = "cost_usd", unit = "USD", what = "Estimated cost of an answer's model calls (the MODEL_PRICES table)" }
  }

  project     = var.project_id
  name        = "${var.name_prefix}-usage-${each.key}"
  description = "${each.value.what}: jsonPayload.${each.value.field} of processor_fn's answered line."
  filter      = "${local.functions_filter} AND jsonPayload.event=\"answered\" AND jsonPayload.${each.value.field}>0"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = each.value.unit
    display_name = "WhatsApp assistant usage (${each.key})"

    labels {
      key         = "business"
      value_type  = "STRING"
      description = "The business's WhatsApp address."
    }
  }

  value_extractor = "EXTRACT(jsonPayload.${each.value.field})"
  label_extractors = {
    business = "EXTRACT(jsonPayload.business)"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 40
      growth_factor      = 1.6
      scale              = each.key == "cost" ? 0.000001 : 1
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_dashboard" "operations" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName = "[${var.environment}] WhatsApp assistant"
    gridLayout = {
      columns = "2"
      widgets = [
        local.event_chart.inbound,
        local.event_chart.replies,
        local.event_chart.failures,
        {
          title = "Dead letters waiting (hold subscription)"
          xyChart = {
            dataSets = [{
              plotType = "LINE"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = join(" AND ", [
                    "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\"",
                    "resource.type=\"pubsub_subscription\"",
                    "resource.label.subscription_id=\"${google_pubsub_subscription.dead_letter_hold.name}\"",
                  ])
                  aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_MAX" }
                }
              }
            }]
            yAxis = { label = "messages", scale = "LINEAR" }
          }
        },
        {
          title = "Send queue: tasks waiting"
          xyChart = {
            dataSets = [{
              plotType = "LINE"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = join(" AND ", [
                    "metric.type=\"cloudtasks.googleapis.com/queue/depth\"",
                    "resource.type=\"cloud_tasks_queue\"",
                    "resource.label.queue_id=\"${google_cloud_tasks_queue.outbound.name}\"",
                  ])
                  aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_MAX" }
                }
              }
            }]
            yAxis = { label = "tasks", scale = "LINEAR" }
          }
        },
        {
          title = "Send queue: how late attempts run (p50, p99 of scheduled → attempted)"
          xyChart = {
            dataSets = [for percentile in ["50", "99"] : {
              plotType       = "LINE"
              legendTemplate = "p${percentile}"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = join(" AND ", [
                    "metric.type=\"cloudtasks.googleapis.com/queue/task_attempt_delays\"",
                    "resource.type=\"cloud_tasks_queue\"",
                    "resource.label.queue_id=\"${google_cloud_tasks_queue.outbound.name}\"",
                  ])
                  aggregation = {
                    alignmentPeriod    = "60s"
                    perSeriesAligner   = "ALIGN_DELTA"
                    crossSeriesReducer = "REDUCE_PERCENTILE_${percentile}"
                  }
                }
              }
            }]
            yAxis = { label = "ms", scale = "LINEAR" }
          }
        },
        {
          title = "Webhook latency (Cloud Run, p50 and p99)"
          xyChart = {
            dataSets = [for percentile in ["50", "99"] : {
              plotType       = "LINE"
              legendTemplate = "p${percentile}"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = join(" AND ", [
                    "metric.type=\"run.googleapis.com/request_latencies\"",
                    "resource.type=\"cloud_run_revision\"",
                    "resource.label.service_name=\"${local.service_names.webhook}\"",
                  ])
                  aggregation = {
                    alignmentPeriod    = "60s"
                    perSeriesAligner   = "ALIGN_DELTA"
                    crossSeriesReducer = "REDUCE_PERCENTILE_${percentile}"
                  }
                }
              }
            }]
            yAxis = { label = "ms", scale = "LINEAR" }
          }
        },
        {
          title = "Model latency: processor_fn requests, which wait for the model (p50 and p99)"
          xyChart = {
            dataSets = [for percentile in ["50", "99"] : {
              plotType       = "LINE"
              legendTemplate = "p${percentile}"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = join(" AND ", [
                    "metric.type=\"run.googleapis.com/request_latencies\"",
                    "resource.type=\"cloud_run_revision\"",
                    "resource.label.service_name=\"${local.service_names.processor}\"",
                  ])
                  aggregation = {
                    alignmentPeriod    = "60s"
                    perSeriesAligner   = "ALIGN_DELTA"
                    crossSeriesReducer = "REDUCE_PERCENTILE_${percentile}"
                  }
                }
              }
            }]
            yAxis = { label = "ms", scale = "LINEAR" }
          }
        },
        {
          title = "Model call time per business (p50 and p99, retries included)"
          xyChart = {
            dataSets = [for percentile in ["50", "99"] : {
              plotType       = "LINE"
              legendTemplate = "p${percentile} $${metric.labels.business}"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.model_latency.name}\""
                  aggregation = {
                    alignmentPeriod    = "60s"
                    perSeriesAligner   = "ALIGN_DELTA"
                    crossSeriesReducer = "REDUCE_PERCENTILE_${percentile}"
                    groupByFields      = ["metric.label.business"]
                  }
                }
              }
            }]
            yAxis = { label = "ms", scale = "LINEAR" }
          }
        },
        local.event_chart.model,
        local.event_chart.tools,
        local.event_chart.tool_errors,
        {
          title = "Messages answered per business (per UTC day)"
          xyChart = {
            dataSets = [{
              plotType       = "STACKED_BAR"
              legendTemplate = "$${metric.labels.business}"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = join(" AND ", [
                    "metric.type=\"${local.events_metric}\"",
                    "resource.type=\"cloud_run_revision\"",
                    "metric.label.event=\"answered\"",
                  ])
                  aggregation = {
                    alignmentPeriod    = "86400s"
                    perSeriesAligner   = "ALIGN_DELTA"
                    crossSeriesReducer = "REDUCE_SUM"
                    groupByFields      = ["metric.label.business"]
                  }
                }
              }
            }]
            yAxis = { label = "messages per day", scale = "LINEAR" }
          }
        },
        local.usage_chart.tokens,
        local.usage_chart.cost,
      ]
    }
  })

  depends_on = [google_project_service.enabled]
}

# A message still open LIVENESS_SECONDS after receipt: the reconciler closed it
# as failed, so its user got no answer.
resource "google_monitoring_alert_policy" "liveness" {
  project      = var.project_id
  display_name = "[${var.environment}] WhatsApp assistant: messages not finished within the liveness bound"
  combiner     = "OR"
  severity     = "CRITICAL"

  conditions {
    display_name = "The reconciler closed a stalled message"

    condition_matched_log {
      filter = local.stalled_filter
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "300s"
    }
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "WhatsApp messages not finished within ${var.liveness_seconds}s in ${var.environment}"
    content   = <<-EOT
      Runbook: find the stalled line's `sid` and `reason` in the reconciler's logs, see which step held the message (`make failures` lists it), fix that step (processor_fn, the model, the send queue or Twilio), then answer the user by hand if it matters.

      The reconciler closed at least one message that was still open
      ${var.liveness_seconds} s after it arrived and recorded it in Firestore
      (failed_messages); that user got no answer to it, later replies go on.
    EOT
  }

  notification_channels = var.notification_channels

  depends_on = [google_project_service.enabled]
}

# The model failed (down, too slow, refused) and the user got FALLBACK_REPLY.
resource "google_monitoring_alert_policy" "model_failing" {
  project      = var.project_id
  display_name = "[${var.environment}] WhatsApp assistant: the model is failing"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "processor_fn logged ai_failed"

    condition_matched_log {
      filter = local.ai_failed_filter
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "300s"
    }
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "The model is failing in ${var.environment}: users get the fallback reply"
    content   = <<-EOT
      Runbook: read the `reason` of processor_fn's `ai_failed` lines; check the OpenAI status page, the API key's quota and billing, and `openai-api-key` in Secret Manager; if the model is slow rather than down, compare with `model_budget_seconds`.

      Users are getting FALLBACK_REPLY instead of an answer; each such message
      is recorded in failed_messages with status "fallback".
    EOT
  }

  notification_channels = var.notification_channels

  depends_on = [google_project_service.enabled]
}

# Every recorded failure logs one ERROR line; many per minute across the
# services means failures are rising, whatever the step. Cloud Logging's own
# entry count is a built-in metric, so this alert exists on the first apply.
resource "google_monitoring_alert_policy" "failure_rate" {
  project      = var.project_id
  display_name = "[${var.environment}] WhatsApp assistant: failure rate rising"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "More than ${local.failure_rate_per_minute} ERROR log entries per minute for 5 minutes"

    condition_threshold {
      filter = join(" AND ", [
        "metric.type=\"logging.googleapis.com/log_entry_count\"",
        "resource.type=\"cloud_run_revision\"",
        "metric.label.severity=\"ERROR\"",
        "(${join(" OR ", [for name in values(local.service_names) : "resource.label.service_name=\"${name}\""])})",
      ])
      comparison      = "COMPARISON_GT"
      threshold_value = local.failure_rate_per_minute
      duration        = "300s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
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
    subject   = "WhatsApp assistant failures rising in ${var.environment}"
    content   = <<-EOT
      Runbook: open the "[${var.environment}] WhatsApp assistant" dashboard's "Failures by reason" chart to see which step fails, run `make failures` for the messages and reasons, then follow that step's alert (model, sends, liveness, dead letters).

      More than ${local.failure_rate_per_minute} ERROR log entries per minute
      for 5 minutes across the services.
    EOT
  }

  notification_channels = var.notification_channels

  depends_on = [google_project_service.enabled]
}

# A business spent its model budget: its customers get its budget_reply until the
# next UTC day (month, for a cost budget). One ERROR line per business and day,
# whatever the instances (a marker document created once); a log match, like the
# alerts above, so it exists on the first apply.
resource "google_monitoring_alert_policy" "budget_exhausted" {
  project      = var.project_id
  display_name = "[${var.environment}] WhatsApp assistant: a business's model budget is spent"
  combiner     = "OR"
  severity     = "WARNING"

  conditions {
    display_name = "processor_fn logged budget_exhausted"

    condition_matched_log {
      filter = "${local.functions_filter} AND jsonPayload.event=\"budget_exhausted\""
      label_extractors = {
        business = "EXTRACT(jsonPayload.business)"
      }
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "3600s"
    }
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "A business's model budget is spent in ${var.environment}"
    content   = <<-EOT
      Runbook: `make admin ARGS="usage --business BUSINESS --days 7"` shows the business's tokens, estimated cost and messages per day; raise its `daily_token_budget` or `monthly_cost_budget` in the profiles file and `make profiles-apply` if the spend is expected, or look for abuse (one user, a loop) if not.

      Messages to that business get its `budget_reply`, without a model call,
      until the next UTC day (month, for the cost budget); commands, opt-out
      and handoff still work.
    EOT
  }

  notification_channels = var.notification_channels

  depends_on = [google_project_service.enabled]
}
