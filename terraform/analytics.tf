# Analytics where they scale (docs/analytics.md, decision 0025): the pipeline's
# structured event lines, exported by a Cloud Logging sink into a BigQuery
# dataset, one partitioned table per log (run_googleapis_com_stdout for the
# services' stdout). Business owners' questions are SQL over those tables; the
# pipeline writes nothing more for them (no extra Firestore operation or call).
#
# Only event lines of the pipeline's services go: the inbox (staff e-mails at
# sign-in) is left out, and so is any line that carries a tool call's
# arguments (logged only when a business's profile asks for it) or a stack
# trace. Event lines carry keyed ids and counts, never message text
# (tests/unit/test_analytics.py runs the handlers and checks it).

variable "analytics_dataset_id" {
  type        = string
  description = "BigQuery dataset id the event lines are exported to (letters, digits, underscores)."
  default     = "wa_events"

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]*$", var.analytics_dataset_id)) && length(var.analytics_dataset_id) <= 1024
    error_message = "analytics_dataset_id must be letters, digits or underscores, not starting with a digit."
  }
}

variable "analytics_location" {
  type        = string
  description = "BigQuery location of the dataset (a region such as europe-west1, or US / EU); empty: the deployment's region."
  default     = ""
}

variable "analytics_partition_expiration_days" {
  type        = number
  description = "Days a day's partition of exported event lines is kept before BigQuery deletes it (the dataset's default partition expiration)."
  default     = 400

  validation {
    condition     = var.analytics_partition_expiration_days >= 1 && var.analytics_partition_expiration_days <= 3650
    error_message = "analytics_partition_expiration_days must be between 1 and 3650."
  }
}

variable "analytics_events" {
  type        = list(string)
  description = "Events exported (the lines' event field, e.g. [\"received\", \"answered\", \"sent\", \"ignored\"] for docs/analytics.md's queries); empty: every event line of the pipeline. A shorter list lowers BigQuery's ingestion and storage (docs/decisions/0025-analytics-sink.md)."
  default     = []

  validation {
    condition     = alltrue([for e in var.analytics_events : can(regex("^[a-z_]{1,64}$", e))])
    error_message = "each analytics_events entry must be an event name (lowercase letters and underscores)."
  }
}

locals {
  # The services whose event lines are exported: the pipeline, not the inbox.
  analytics_services = [for key, name in local.service_names : name if key != "inbox"]

  analytics_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "(${join(" OR ", [for name in local.analytics_services : "resource.labels.service_name=\"${name}\""])})",
    length(var.analytics_events) == 0 ? "jsonPayload.event:*" : "(${join(" OR ", [for e in var.analytics_events : "jsonPayload.event=\"${e}\""])})",
    "NOT jsonPayload.arguments:*",
    "NOT jsonPayload.stack_trace:*",
  ])
}

resource "google_bigquery_dataset" "analytics" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption is adequate for event lines that carry keyed ids and counts, no message text; a customer-managed key adds a KMS key lifecycle this project does not need (as for the topics and the image repository).
  project                         = var.project_id
  dataset_id                      = var.analytics_dataset_id
  friendly_name                   = "WhatsApp assistant events"
  description                     = "Event lines of the WhatsApp assistant's pipeline, exported by the ${var.name_prefix}-events-to-bigquery sink (docs/analytics.md)."
  location                        = var.analytics_location != "" ? var.analytics_location : var.region
  default_partition_expiration_ms = var.analytics_partition_expiration_days * 86400000
  delete_contents_on_destroy      = false

  depends_on = [google_project_service.enabled]
}

resource "google_logging_project_sink" "analytics" {
  project     = var.project_id
  name        = "${var.name_prefix}-events-to-bigquery"
  description = "The pipeline's event lines (keyed ids and counts, no message text) into BigQuery for docs/analytics.md."
  destination = "bigquery.googleapis.com/projects/${var.project_id}/datasets/${google_bigquery_dataset.analytics.dataset_id}"
  filter      = local.analytics_filter

  # Its own service account, so the grant below is on this dataset and for this sink only.
  unique_writer_identity = true

  bigquery_options {
    # One table per log, partitioned by day (the entries' timestamp), instead of a table per day.
    use_partitioned_tables = true
  }
}

# The sink writes rows into its own dataset and nothing else.
resource "google_bigquery_dataset_iam_member" "analytics_writer" {
  project    = var.project_id
  dataset_id = google_bigquery_dataset.analytics.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = google_logging_project_sink.analytics.writer_identity
}

output "analytics_dataset" {
  description = "The BigQuery dataset the event lines are exported to (project:dataset); its tables and the queries: docs/analytics.md."
  value       = "${var.project_id}:${google_bigquery_dataset.analytics.dataset_id}"
}
