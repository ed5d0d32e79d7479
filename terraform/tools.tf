# Business tools (docs/decisions/0016-business-tools.md): the endpoints a
# business profile's `tools:` lets the model call. Each tool names the secret
# its requests are signed with; Terraform creates each such secret, without a
# value (operators add it with `gcloud secrets versions add`, and give the
# same value to the business), and lets processor_fn, the only caller of
# tools, read it. Nothing else may.

variable "tool_secret_ids" {
  type        = list(string)
  description = "Secret Manager secret ids the business profiles' tools name as their `secret` (usually one per business). Each is created empty and readable by processor_fn only; a profile naming a secret not listed here gets 'the tool is not set up' answers."
  default     = []

  validation {
    condition     = alltrue([for id in var.tool_secret_ids : can(regex("^[A-Za-z0-9_-]{1,255}$", id))])
    error_message = "tool_secret_ids must be Secret Manager secret ids: 1 to 255 letters, digits, '_' or '-'."
  }
}

variable "max_tool_rounds" {
  type        = number
  description = "Function-calling rounds per message before the model must answer in words (env MAX_TOOL_ROUNDS); a business profile's max_tool_rounds overrides it. Every round is one more model call."
  default     = 3

  validation {
    condition     = var.max_tool_rounds >= 1 && var.max_tool_rounds <= 10
    error_message = "max_tool_rounds must be between 1 and 10."
  }
}

variable "tool_response_max_bytes" {
  type        = number
  description = "Largest answer read from a business tool (env TOOL_RESPONSE_MAX_BYTES); a larger one is an error the model is told about."
  default     = 16384

  validation {
    condition     = var.tool_response_max_bytes >= 1024 && var.tool_response_max_bytes <= 1048576
    error_message = "tool_response_max_bytes must be between 1024 and 1048576."
  }
}

resource "google_secret_manager_secret" "tool" {
  for_each = toset(var.tool_secret_ids)

  project   = var.project_id
  secret_id = each.value

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_iam_member" "tool_accessor" {
  for_each = toset(var.tool_secret_ids)

  project   = var.project_id
  secret_id = google_secret_manager_secret.tool[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.identity["processor"].member
}
