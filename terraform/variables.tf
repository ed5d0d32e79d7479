# Every input of the stack. Per-environment values live in
# environments/<env>.tfvars; project_id, region and image_tag are given on the
# command line (Cloud Build passes them from its substitutions).

# ---------------------------------------------------------------- project ---

variable "project_id" {
  type        = string
  description = "Google Cloud project that hosts one environment of the assistant."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id (6-30 lowercase letters, digits or hyphens)."
  }
}

variable "region" {
  type        = string
  description = "Region for Cloud Run, Cloud Tasks and Artifact Registry."
  default     = "us-central1"

  validation {
    # One or more digits: europe-west10 and me-central2 are regions too.
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must look like us-central1, europe-west1 or europe-west10."
  }
}

variable "environment" {
  type        = string
  description = "Short environment name (dev, staging, prod); used in labels and alert titles."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,15}$", var.environment))
    error_message = "environment must be 1-16 lowercase letters, digits or hyphens."
  }
}

variable "name_prefix" {
  type        = string
  description = "Prefix of service and service-account names; keeps them short enough for the 30-character service-account id limit."
  default     = "wa"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,11}$", var.name_prefix))
    error_message = "name_prefix must be 2-12 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "labels" {
  type        = map(string)
  description = "Extra labels added to every resource that supports labels (cost centre, owner...)."
  default     = {}
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the Cloud Run services and the Firestore database from `terraform destroy`. Keep true in production."
  default     = true
}

# ------------------------------------------------------------------ image ---

variable "artifact_repository" {
  type        = string
  description = "Artifact Registry Docker repository id; Cloud Build's _REPOSITORY substitution must match."
  default     = "whatsapp-assistant"

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.artifact_repository))
    error_message = "artifact_repository must be lowercase letters, digits and hyphens."
  }
}

variable "image_name" {
  type        = string
  description = "Image name inside the repository; the one image runs every function."
  default     = "whatsapp-assistant"
}

variable "image_tag" {
  type        = string
  description = "Image tag to deploy (Cloud Build passes the commit's SHORT_SHA). Empty only for the phase-one apply (docs/deploy.md, step 5) that targets the APIs, registry and secrets."
  default     = ""

  validation {
    condition     = var.image_tag == "" || (can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest")
    error_message = "image_tag must be a Docker tag other than 'latest' (deploy a commit's tag, which is never moved, so a rollback is a re-apply)."
  }
}

variable "image_keep_count" {
  type        = number
  description = "Newest image versions the registry's cleanup policy always keeps (each is one commit's tag); older ones are deleted after a week. The deployed tag is always kept."
  default     = 20

  validation {
    condition     = var.image_keep_count >= 5 && var.image_keep_count <= 500 && floor(var.image_keep_count) == var.image_keep_count
    error_message = "image_keep_count must be a whole number between 5 and 500."
  }
}

# ---------------------------------------------------------------- release ---

variable "state_bucket" {
  type        = string
  description = "GCS bucket of this configuration's own Terraform state (the -backend-config bucket). Read back during plan to refuse applying an older release over a newer one."

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$", var.state_bucket))
    error_message = "state_bucket must be a Cloud Storage bucket name."
  }
}

variable "state_prefix" {
  type        = string
  description = "State prefix inside state_bucket (the -backend-config prefix), e.g. whatsapp-assistant/prod."

  validation {
    condition     = can(regex("^[A-Za-z0-9._/-]+$", var.state_prefix))
    error_message = "state_prefix must be a path such as whatsapp-assistant/prod."
  }
}

variable "release_sequence" {
  type        = number
  description = "Order of this release: Cloud Build passes its build's creation time in milliseconds. An apply whose release_sequence is lower than the one last applied fails, so an older commit never replaces a newer one. For a deliberate manual apply pass the current time: $(date +%s%3N)."
  default     = 0

  validation {
    condition     = var.release_sequence >= 0 && floor(var.release_sequence) == var.release_sequence
    error_message = "release_sequence must be a whole number of milliseconds since 1970."
  }
}

# ---------------------------------------------------------------- webhook ---

variable "webhook_custom_url" {
  type        = string
  description = "Public https URL Twilio posts to when a custom domain fronts the webhook; empty means the deterministic run.app URL."
  default     = ""

  validation {
    condition     = var.webhook_custom_url == "" || can(regex("^https://[^\\s]+$", var.webhook_custom_url))
    error_message = "webhook_custom_url must be empty or an https:// URL."
  }
}

variable "trust_forwarded_headers" {
  type        = bool
  description = "Let webhook_fn rebuild its URL from X-Forwarded-* headers; only behind a load balancer you control."
  default     = false
}

variable "webhook_max_body_bytes" {
  type        = number
  description = "Largest request body webhook_fn accepts (env WEBHOOK_MAX_BODY_BYTES); Twilio's form posts are a few KiB."
  default     = 65536

  validation {
    condition     = var.webhook_max_body_bytes >= 1024 && var.webhook_max_body_bytes <= 10485760
    error_message = "webhook_max_body_bytes must be between 1024 and 10485760."
  }
}

variable "publish_max_latency_seconds" {
  type        = number
  description = "How long webhook_fn's Pub/Sub client may hold a message to batch it (env PUBLISH_MAX_LATENCY_SECONDS); Twilio waits for the publish."
  default     = 0.001

  validation {
    condition     = var.publish_max_latency_seconds >= 0 && var.publish_max_latency_seconds <= 1
    error_message = "publish_max_latency_seconds must be between 0 and 1."
  }
}

# ---------------------------------------------------------------- Pub/Sub ---

variable "inbound_topic" {
  type        = string
  description = "Topic webhook_fn publishes inbound messages to (env PUBSUB_TOPIC)."
  default     = "inbound-messages"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9._~+%-]{2,200}$", var.inbound_topic))
    error_message = "inbound_topic must be a valid Pub/Sub topic id."
  }
}

variable "dead_letter_subscription" {
  type        = string
  description = "Push subscription on the dead-letter topic; processor_fn recognises dead-lettered deliveries by this name (env PUBSUB_DEAD_LETTER_SUBSCRIPTION)."
  default     = "inbound-messages-dead-letter"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9._~+%-]{2,200}$", var.dead_letter_subscription))
    error_message = "dead_letter_subscription must be a valid Pub/Sub subscription id."
  }
}

variable "max_delivery_attempts" {
  type        = number
  description = "Deliveries to processor_fn before a message goes to the dead-letter topic."
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100 && floor(var.max_delivery_attempts) == var.max_delivery_attempts
    error_message = "max_delivery_attempts must be a whole number between 5 and 100 (Pub/Sub's limits)."
  }
}

variable "processor_ack_deadline_seconds" {
  type        = number
  description = "Ack deadline of the push subscription; for push it is also the request timeout, and processor_fn uses it as its processing lease (env PROCESSING_LEASE_SECONDS). Must exceed model_budget_seconds."
  default     = 120

  validation {
    condition     = var.processor_ack_deadline_seconds >= 60 && var.processor_ack_deadline_seconds <= 600
    error_message = "processor_ack_deadline_seconds must be between 60 and 600."
  }
}

variable "push_min_backoff_seconds" {
  type        = number
  description = "Shortest wait before Pub/Sub redelivers a message processor_fn did not acknowledge."
  default     = 10

  validation {
    condition     = var.push_min_backoff_seconds >= 0 && var.push_min_backoff_seconds <= 600
    error_message = "push_min_backoff_seconds must be between 0 and 600."
  }
}

variable "push_max_backoff_seconds" {
  type        = number
  description = "Longest wait before Pub/Sub redelivers a message processor_fn did not acknowledge."
  default     = 300

  validation {
    condition     = var.push_max_backoff_seconds >= 0 && var.push_max_backoff_seconds <= 600
    error_message = "push_max_backoff_seconds must be between 0 and 600."
  }
}

variable "dead_letter_retention_days" {
  type        = number
  description = "How long the dead-letter hold subscription keeps messages for inspection and replay (Pub/Sub allows 10 minutes to 31 days)."
  default     = 7

  validation {
    condition     = var.dead_letter_retention_days >= 1 && var.dead_letter_retention_days <= 31 && floor(var.dead_letter_retention_days) == var.dead_letter_retention_days
    error_message = "dead_letter_retention_days must be a whole number between 1 and 31 (a subscription keeps messages at most 31 days)."
  }
}

variable "grant_legacy_pubsub_token_creator" {
  type        = bool
  description = "Grant the Pub/Sub service agent Token Creator on the push service account. Google documents this only for projects whose Pub/Sub service agent was created on or before 8 April 2021."
  default     = false
}

# ----------------------------------------------------------------- OpenAI ---

variable "openai_model" {
  type        = string
  description = "OpenAI model processor_fn asks (env OPENAI_MODEL)."
  default     = "gpt-4o-mini"
}

variable "openai_timeout_seconds" {
  type        = number
  description = "Timeout of one OpenAI request (env OPENAI_TIMEOUT_SECONDS)."
  default     = 20

  validation {
    condition     = var.openai_timeout_seconds >= 0.1 && var.openai_timeout_seconds <= 600
    error_message = "openai_timeout_seconds must be between 0.1 and 600 (the range shared/config.py accepts)."
  }
}

variable "openai_max_retries" {
  type        = number
  description = "Retries of one OpenAI request after the first attempt (env OPENAI_MAX_RETRIES)."
  default     = 2

  validation {
    condition     = var.openai_max_retries >= 0 && var.openai_max_retries <= 10
    error_message = "openai_max_retries must be between 0 and 10."
  }
}

variable "model_budget_seconds" {
  type        = number
  description = "Wall-clock budget of one whole model call, the SDK's retries included (env MODEL_BUDGET_SECONDS). Must stay below processor_ack_deadline_seconds, the processing lease, so a reply is never still being written when Pub/Sub redelivers the message."
  default     = 60

  validation {
    condition     = var.model_budget_seconds >= 5 && var.model_budget_seconds <= 590
    error_message = "model_budget_seconds must be between 5 and 590."
  }
}

variable "openai_max_tokens" {
  type        = number
  description = "Upper bound of tokens in one model answer (env OPENAI_MAX_TOKENS); caps cost and the length of a WhatsApp reply."
  default     = 600

  validation {
    condition     = var.openai_max_tokens >= 16 && var.openai_max_tokens <= 16000 && floor(var.openai_max_tokens) == var.openai_max_tokens
    error_message = "openai_max_tokens must be a whole number between 16 and 16000."
  }
}

variable "openai_base_url" {
  type        = string
  description = "Base URL of an OpenAI-compatible API (env OPENAI_BASE_URL); empty means OpenAI's own endpoint."
  default     = ""

  validation {
    condition     = var.openai_base_url == "" || can(regex("^https://[^\\s]+$", var.openai_base_url))
    error_message = "openai_base_url must be empty or an https:// URL."
  }
}

variable "system_prompt" {
  type        = string
  description = "The assistant's persona: system prompt sent with every conversation (env SYSTEM_PROMPT). Empty means the built-in default of shared/config.py. Use a heredoc in the tfvars for several lines."
  default     = ""

  validation {
    condition     = length(var.system_prompt) <= 20000
    error_message = "system_prompt must be at most 20000 characters."
  }
}

variable "fallback_reply" {
  type        = string
  description = "Text sent when no model answer can be had in time (env FALLBACK_REPLY). Empty means the built-in default of shared/config.py."
  default     = ""

  validation {
    condition     = length(var.fallback_reply) <= 1600
    error_message = "fallback_reply must be at most 1600 characters (one WhatsApp message through Twilio)."
  }
}

variable "max_inbound_chars" {
  type        = number
  description = "Longest user message processor_fn passes to the model; longer ones are cut (env MAX_INBOUND_CHARS)."
  default     = 4000

  validation {
    condition     = var.max_inbound_chars >= 100 && var.max_inbound_chars <= 50000 && floor(var.max_inbound_chars) == var.max_inbound_chars
    error_message = "max_inbound_chars must be a whole number between 100 and 50000."
  }
}

variable "max_history_chars" {
  type        = number
  description = "Characters of conversation history sent to the model at most (env MAX_HISTORY_CHARS); bounds prompt cost next to max_context_messages."
  default     = 16000

  validation {
    condition     = var.max_history_chars >= 1000 && var.max_history_chars <= 200000 && floor(var.max_history_chars) == var.max_history_chars
    error_message = "max_history_chars must be a whole number between 1000 and 200000."
  }
}

variable "max_reply_chars" {
  type        = number
  description = "Longest reply sent to the user; a longer model answer is cut before it is split into WhatsApp messages (env MAX_REPLY_CHARS)."
  default     = 3200

  validation {
    condition     = var.max_reply_chars >= 100 && var.max_reply_chars <= 20000 && floor(var.max_reply_chars) == var.max_reply_chars
    error_message = "max_reply_chars must be a whole number between 100 and 20000."
  }
}

variable "max_open_messages" {
  type        = number
  description = "Unfinished messages one conversation may hold; a further message waits for Pub/Sub's redelivery (env MAX_OPEN_MESSAGES)."
  default     = 20

  validation {
    condition     = var.max_open_messages >= 1 && var.max_open_messages <= 100 && floor(var.max_open_messages) == var.max_open_messages
    error_message = "max_open_messages must be a whole number between 1 and 100."
  }
}

# -------------------------------------------------------------- Firestore ---

variable "firestore_location" {
  type        = string
  description = "Firestore location (a region such as us-central1, or a multi-region such as nam5); null means var.region. Cannot change after creation."
  default     = null
}

variable "conversation_ttl_seconds" {
  type        = number
  description = "Idle time after which a conversation document expires (env CONVERSATION_TTL_SECONDS)."
  default     = 86400

  validation {
    condition     = var.conversation_ttl_seconds >= 60 && var.conversation_ttl_seconds <= 34560000
    error_message = "conversation_ttl_seconds must be between 60 and 34560000 (400 days)."
  }
}

variable "max_context_messages" {
  type        = number
  description = "Messages of history sent to OpenAI (env MAX_CONTEXT_MESSAGES)."
  default     = 20

  validation {
    condition     = var.max_context_messages >= 2 && var.max_context_messages <= 200
    error_message = "max_context_messages must be between 2 and 200."
  }
}

variable "dedupe_horizon_seconds" {
  type        = number
  description = "How long processor_fn remembers a message id to drop redeliveries (env DEDUPE_HORIZON_SECONDS); the seen_messages TTL field expires the records. Must be at least the inbound subscription's 7-day retention, the longest a redelivery can arrive."
  default     = 691200

  validation {
    condition     = var.dedupe_horizon_seconds >= 86400 && var.dedupe_horizon_seconds <= 5184000 && floor(var.dedupe_horizon_seconds) == var.dedupe_horizon_seconds
    error_message = "dedupe_horizon_seconds must be a whole number between 86400 (1 day) and 5184000 (60 days)."
  }
}

# ------------------------------------------------------------- liveness ---

variable "liveness_seconds" {
  type        = number
  description = "Every message is terminal (answered, or recorded as failed) within this time from receipt; the reconciler enforces it (env LIVENESS_SECONDS)."
  default     = 900

  validation {
    condition     = var.liveness_seconds >= 300 && var.liveness_seconds <= 86400 && floor(var.liveness_seconds) == var.liveness_seconds
    error_message = "liveness_seconds must be a whole number between 300 and 86400."
  }
}

variable "reconcile_after_seconds" {
  type        = number
  description = "Time without progress after which the reconciler gives the reply whose turn it is a fresh send task (env RECONCILE_AFTER_SECONDS)."
  default     = 180

  validation {
    condition     = var.reconcile_after_seconds >= 60 && var.reconcile_after_seconds <= 3600 && floor(var.reconcile_after_seconds) == var.reconcile_after_seconds
    error_message = "reconcile_after_seconds must be a whole number between 60 and 3600."
  }
}

# ------------------------------------------------------------ Cloud Tasks ---

variable "tasks_queue" {
  type        = string
  description = "Cloud Tasks queue of outbound replies (env TASKS_QUEUE)."
  default     = "outbound-messages"

  validation {
    condition     = can(regex("^[A-Za-z0-9-]{1,100}$", var.tasks_queue))
    error_message = "tasks_queue must be 1-100 letters, digits or hyphens."
  }
}

variable "twilio_sender_mps_limit" {
  type        = number
  description = "Messages per second Twilio allows our WhatsApp sender (80 by default; Twilio raises it on request). The queue may never dispatch faster."
  default     = 80

  validation {
    condition     = var.twilio_sender_mps_limit >= 1 && var.twilio_sender_mps_limit <= 1000
    error_message = "twilio_sender_mps_limit must be between 1 and 1000."
  }
}

variable "tasks_max_dispatches_per_second" {
  type        = number
  description = "Queue dispatch rate to sender_fn; kept well under twilio_sender_mps_limit so retries and status callbacks never push us over."
  default     = 20

  validation {
    condition     = var.tasks_max_dispatches_per_second > 0 && var.tasks_max_dispatches_per_second <= 500
    error_message = "tasks_max_dispatches_per_second must be between 0 and 500 (Cloud Tasks' limit)."
  }
}

variable "tasks_max_concurrent_dispatches" {
  type        = number
  description = "Replies in flight to sender_fn at once."
  default     = 20

  validation {
    condition     = var.tasks_max_concurrent_dispatches >= 1 && var.tasks_max_concurrent_dispatches <= 5000
    error_message = "tasks_max_concurrent_dispatches must be between 1 and 5000."
  }
}

variable "tasks_max_attempts" {
  type        = number
  description = "Minimum attempts per reply task. Not -1: sender_fn answers 503 to wait for an earlier reply, so a task needs many attempts but never unlimited ones."
  default     = 100

  validation {
    condition     = var.tasks_max_attempts >= 10 && var.tasks_max_attempts <= 1000
    error_message = "tasks_max_attempts must be between 10 and 1000."
  }
}

variable "tasks_max_retry_duration_seconds" {
  type        = number
  description = "Time after the first attempt during which a reply task may still be retried; WhatsApp's 24-hour reply window makes later delivery pointless."
  default     = 86400

  validation {
    condition     = var.tasks_max_retry_duration_seconds >= 600 && var.tasks_max_retry_duration_seconds <= 86400
    error_message = "tasks_max_retry_duration_seconds must be between 600 and 86400."
  }
}

variable "send_max_attempts" {
  type        = number
  description = "Real Twilio failures after which sender_fn gives up on a reply and records it (env SEND_MAX_ATTEMPTS)."
  default     = 8

  validation {
    condition     = var.send_max_attempts >= 1 && var.send_max_attempts <= 100
    error_message = "send_max_attempts must be between 1 and 100."
  }
}

variable "twilio_timeout_seconds" {
  type        = number
  description = "Timeout of one Twilio API request (env TWILIO_TIMEOUT_SECONDS); a send that times out is retried by Cloud Tasks, never in-process."
  default     = 10

  validation {
    condition     = var.twilio_timeout_seconds >= 1 && var.twilio_timeout_seconds <= 50
    error_message = "twilio_timeout_seconds must be between 1 and 50 (below the sender's 60 s request timeout)."
  }
}

variable "twilio_api_base_url" {
  type        = string
  description = "Base URL of Twilio's REST API (env TWILIO_API_BASE_URL), e.g. a regional edge; empty means Twilio's default."
  default     = ""

  validation {
    condition     = var.twilio_api_base_url == "" || can(regex("^https://[^\\s]+$", var.twilio_api_base_url))
    error_message = "twilio_api_base_url must be empty or an https:// URL."
  }
}

# ----------------------------------------------------------------- Twilio ---

variable "twilio_account_sid" {
  type        = string
  description = "Twilio Account SID (not a secret: the auth token is, and lives in Secret Manager)."

  validation {
    condition     = can(regex("^AC[0-9a-fA-F]{32}$", var.twilio_account_sid))
    error_message = "twilio_account_sid must be AC followed by 32 hex digits."
  }
}

variable "twilio_whatsapp_from" {
  type        = string
  description = "Our WhatsApp sender, e.g. whatsapp:+14155238886 (env TWILIO_WHATSAPP_FROM)."

  validation {
    condition     = can(regex("^whatsapp:\\+[1-9][0-9]{6,14}$", var.twilio_whatsapp_from))
    error_message = "twilio_whatsapp_from must look like whatsapp:+14155238886."
  }
}

# ---------------------------------------------------------------- secrets ---

variable "twilio_auth_token_secret_id" {
  type        = string
  description = "Secret Manager secret holding the Twilio auth token (env TWILIO_AUTH_TOKEN_SECRET)."
  default     = "twilio-auth-token"
}

variable "openai_api_key_secret_id" {
  type        = string
  description = "Secret Manager secret holding the OpenAI API key (env OPENAI_API_KEY_SECRET)."
  default     = "openai-api-key"
}

variable "address_hash_key_secret_id" {
  type        = string
  description = "Secret Manager secret holding the key of the address hashes: conversation ids and log masks (env ADDRESS_HASH_KEY_SECRET). Set once; a new key makes every conversation start afresh."
  default     = "address-hash-key"
}

variable "inbox_session_key_secret_id" {
  type        = string
  description = "Secret Manager secret id of the key that signs the inbox's session cookies (value added with gcloud, docs/deploy.md)."
  default     = "inbox-session-key"
}

variable "caller_key_secret_id" {
  type        = string
  description = "Secret Manager secret id of the caller key that Pub/Sub push, Cloud Tasks and Cloud Scheduler carry to the private services (docs/decisions/0003-caller-verification.md). Terraform generates its value."
  default     = "caller-key"
}

variable "secret_refresh_interval_seconds" {
  type        = number
  description = "After a refused credential, a service re-reads its secret at most this often (env SECRET_REFRESH_INTERVAL_SECONDS): rotation without a redeploy."
  default     = 60

  validation {
    condition     = var.secret_refresh_interval_seconds >= 0 && var.secret_refresh_interval_seconds <= 3600
    error_message = "secret_refresh_interval_seconds must be between 0 and 3600."
  }
}

variable "secret_overlap_seconds" {
  type        = number
  description = "How long the Twilio auth token a rotation replaced is still accepted on webhooks (env SECRET_OVERLAP_SECONDS)."
  default     = 3600

  validation {
    condition     = var.secret_overlap_seconds >= 0 && var.secret_overlap_seconds <= 604800
    error_message = "secret_overlap_seconds must be between 0 and 604800."
  }
}

# ------------------------------------------------------- runtime settings ---

variable "log_level" {
  type        = string
  description = "Log level of the services (env LOG_LEVEL)."
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "log_usage" {
  type        = bool
  description = "Log each instance's cumulative external calls after every request (env LOG_USAGE); for load tests, off in normal operation."
  default     = false
}

variable "max_instances" {
  type = object({
    webhook    = number
    processor  = number
    sender     = number
    reconciler = number
    # Optional so tfvars written before the outbound API and the inbox stay valid.
    outbound = optional(number, 5)
    inbox    = optional(number, 3)
  })
  description = "Upper bound of Cloud Run instances per service; caps cost and protects OpenAI and Twilio quotas. One reconciler instance is enough: it runs once a minute."
  default = {
    webhook    = 10
    processor  = 10
    sender     = 5
    reconciler = 1
    outbound   = 5
    inbox      = 3
  }

  validation {
    condition     = alltrue([for n in values(var.max_instances) : n >= 1 && n <= 100])
    error_message = "each max_instances value must be between 1 and 100."
  }
}

variable "min_instances" {
  type = object({
    webhook    = number
    processor  = number
    sender     = number
    reconciler = number
    # Optional so tfvars written before the outbound API and the inbox stay valid.
    outbound = optional(number, 0)
    inbox    = optional(number, 0)
  })
  description = "Instances kept warm per service; 1 on the webhook removes cold starts from Twilio's 15-second timeout at a small fixed cost."
  default = {
    webhook    = 0
    processor  = 0
    sender     = 0
    reconciler = 0
    outbound   = 0
    inbox      = 0
  }

  validation {
    condition     = alltrue([for n in values(var.min_instances) : n >= 0 && n <= 10])
    error_message = "each min_instances value must be between 0 and 10."
  }
}

variable "concurrency" {
  type = object({
    webhook    = number
    processor  = number
    sender     = number
    reconciler = number
    # Optional so tfvars written before the outbound API and the inbox stay valid.
    outbound = optional(number, 16)
    inbox    = optional(number, 40)
  })
  description = "Requests one instance serves at once; also the functions-framework thread count (env THREADS), since the work is I/O-bound. The reconciler serves one run at a time."
  default = {
    webhook    = 40
    processor  = 16
    sender     = 16
    reconciler = 1
    outbound   = 16
    inbox      = 40
  }

  validation {
    condition     = alltrue([for n in values(var.concurrency) : n >= 1 && n <= 250])
    error_message = "each concurrency value must be between 1 and 250."
  }
}

# ------------------------------------------------------------- monitoring ---

variable "notification_channels" {
  type        = list(string)
  description = "Monitoring notification channel ids (projects/P/notificationChannels/N) that receive the alerts; may be empty."
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", c))])
    error_message = "each notification channel must be projects/PROJECT/notificationChannels/ID."
  }
}

# --------------------------------------------------------- WhatsApp channel ---
# docs/decisions/0011-whatsapp-channel.md

variable "delivery_status_callbacks" {
  type        = bool
  description = "Every send names the webhook as its StatusCallback and callbacks update the reply's ticks (env DELIVERY_STATUS_CALLBACKS)."
  default     = true
}

variable "media_max_bytes" {
  type        = number
  description = "Largest image or voice note processor_fn downloads from Twilio; larger ones get a friendly answer (env MEDIA_MAX_BYTES)."
  default     = 5242880

  validation {
    condition     = var.media_max_bytes >= 1024 && var.media_max_bytes <= 26214400 && floor(var.media_max_bytes) == var.media_max_bytes
    error_message = "media_max_bytes must be a whole number between 1024 and 26214400 (the range shared/config.py accepts)."
  }
}

variable "media_timeout_seconds" {
  type        = number
  description = "Connect and read timeout of one media download (env MEDIA_TIMEOUT_SECONDS)."
  default     = 10

  validation {
    condition     = var.media_timeout_seconds >= 0.1 && var.media_timeout_seconds <= 60
    error_message = "media_timeout_seconds must be between 0.1 and 60 (the range shared/config.py accepts)."
  }
}

variable "twilio_media_redirect_hosts" {
  type        = string
  description = "Comma-separated hosts Twilio's media URLs may redirect to (its media storage); empty keeps the built-in list (env TWILIO_MEDIA_REDIRECT_HOSTS)."
  default     = ""
}

variable "openai_vision_model" {
  type        = string
  description = "Vision-capable chat model asked when a user sends an image (env OPENAI_VISION_MODEL)."
  default     = "gpt-4o-mini"
}

variable "openai_transcribe_model" {
  type        = string
  description = "OpenAI audio transcription model for voice notes (env OPENAI_TRANSCRIBE_MODEL)."
  default     = "gpt-4o-mini-transcribe"
}

variable "typing_indicator" {
  type        = bool
  description = "Show 'typing…' and mark the user's message read while the model answers (env TYPING_INDICATOR)."
  default     = true
}

variable "twilio_messaging_base_url" {
  type        = string
  description = "Base URL of Twilio's messaging API for the typing indicator; empty means https://messaging.twilio.com (env TWILIO_MESSAGING_BASE_URL)."
  default     = ""

  validation {
    condition     = var.twilio_messaging_base_url == "" || can(regex("^https://[^\\s]+$", var.twilio_messaging_base_url))
    error_message = "twilio_messaging_base_url must be empty or an https:// URL."
  }
}

variable "twilio_content_base_url" {
  type        = string
  description = "Base URL of Twilio's Content API, where the Content resources for buttons and lists are created; empty means https://content.twilio.com (env TWILIO_CONTENT_BASE_URL)."
  default     = ""

  validation {
    condition     = var.twilio_content_base_url == "" || can(regex("^https://[^\\s]+$", var.twilio_content_base_url))
    error_message = "twilio_content_base_url must be empty or an https:// URL."
  }
}

variable "content_collection" {
  type        = string
  description = "Firestore collection that remembers the Content resource created for each distinct set of choices (env CONTENT_COLLECTION); renaming it only makes each menu be created once more."
  default     = "content_templates"
}

variable "reengagement_content_sid" {
  type        = string
  description = "Approved template (Content SID, HX...) sent instead of a reply that would leave outside the 24-hour window; empty: such a reply is recorded as failed (env REENGAGEMENT_CONTENT_SID)."
  default     = ""
}

variable "burst_window_seconds" {
  type        = number
  description = "Messages of one user arriving within this many seconds of each other get one answer; 0 turns bursts off (env BURST_WINDOW_SECONDS)."
  default     = 0

  validation {
    condition     = var.burst_window_seconds >= 0 && var.burst_window_seconds <= 30
    error_message = "burst_window_seconds must be between 0 and 30 (the range shared/config.py accepts)."
  }
}

# Business controls (docs/decisions/0012-business-controls.md): defaults every
# business profile may override; profiles themselves live in Firestore.
variable "rate_limit_messages" {
  type        = number
  description = "Answered messages per user and business per window before one notice and silence (env RATE_LIMIT_MESSAGES)."
  default     = 20

  validation {
    condition     = var.rate_limit_messages >= 1 && var.rate_limit_messages <= 10000
    error_message = "rate_limit_messages must be between 1 and 10000 (the range shared/config.py accepts)."
  }
}

variable "rate_limit_window_seconds" {
  type        = number
  description = "Length of the rate-limit window in seconds (env RATE_LIMIT_WINDOW_SECONDS)."
  default     = 60

  validation {
    condition     = var.rate_limit_window_seconds >= 1 && var.rate_limit_window_seconds <= 604800
    error_message = "rate_limit_window_seconds must be between 1 and 604800 (the range shared/config.py accepts)."
  }
}

variable "handoff_pause_seconds" {
  type        = number
  description = "How long a handoff to a person pauses the bot for a conversation (env HANDOFF_PAUSE_SECONDS)."
  default     = 3600

  validation {
    condition     = var.handoff_pause_seconds >= 60 && var.handoff_pause_seconds <= 2592000
    error_message = "handoff_pause_seconds must be between 60 and 2592000 (the range shared/config.py accepts)."
  }
}

variable "profile_cache_seconds" {
  type        = number
  description = "How long a processor instance keeps a business profile before reading it again (env PROFILE_CACHE_SECONDS)."
  default     = 60

  validation {
    condition     = var.profile_cache_seconds >= 0 && var.profile_cache_seconds <= 3600
    error_message = "profile_cache_seconds must be between 0 and 3600 (the range shared/config.py accepts)."
  }
}

variable "profiles_collection" {
  type        = string
  description = "Firestore collection of the business profiles, one document per WhatsApp number; no TTL (env PROFILES_COLLECTION)."
  default     = "business_profiles"
}

# ---------------------------------------------------------- outbound API ---

variable "outbound_invokers" {
  type        = list(string)
  description = "IAM members (such as serviceAccount:crm@PROJECT.iam.gserviceaccount.com) that may call the outbound API (roles/run.invoker on its service). Empty: nobody can. Their service accounts must also be in outbound_allowed_service_accounts."
  default     = []

  validation {
    condition     = alltrue([for m in var.outbound_invokers : can(regex("^(serviceAccount|user|group|domain|principal|principalSet):", m))])
    error_message = "each outbound_invokers entry must be an IAM member such as serviceAccount:NAME@PROJECT.iam.gserviceaccount.com."
  }
}

variable "outbound_caller_businesses" {
  type        = map(list(string))
  description = "For each outbound caller (service account e-mail, as in outbound_allowed_service_accounts), the WhatsApp addresses it may send from: twilio_whatsapp_from or numbers with a business profile; [\"*\"] for all of them (OUTBOUND_CALLERS). A caller not named here is refused (403), whatever its token."
  default     = {}

  validation {
    condition = alltrue([
      for email, businesses in var.outbound_caller_businesses :
      can(regex("^[^@\\s,]+@[^@\\s,]+$", email)) && alltrue([for b in businesses : b == "*" || can(regex("^whatsapp:\\S+$", b))])
    ])
    error_message = "each outbound_caller_businesses key must be a service account e-mail, each value a list of whatsapp: addresses or \"*\"."
  }
}

variable "outbound_allowed_service_accounts" {
  type        = list(string)
  description = "Service account e-mails whose Google OIDC token the outbound API accepts (AUTH_ALLOWED_SERVICE_ACCOUNTS); checked in code on top of IAM, like the processor and the sender."
  default     = []

  validation {
    condition     = alltrue([for e in var.outbound_allowed_service_accounts : can(regex("^[^@\\s,]+@[^@\\s,]+$", e))])
    error_message = "each outbound_allowed_service_accounts entry must be a service account e-mail address."
  }
}

# ------------------------------------------------------------------ inbox ---
# docs/decisions/0021-inbox-sign-in.md

variable "inbox_oauth_client_id" {
  type        = string
  description = "Client ID of the OAuth client (Web application) that Sign in with Google uses for the inbox (INBOX_OAUTH_CLIENT_ID): the audience of the ID tokens it accepts. Created by hand in the Cloud console (docs/deploy.md); empty: nobody can sign in."
  default     = ""

  validation {
    condition     = var.inbox_oauth_client_id == "" || can(regex("^[0-9A-Za-z-]+\\.apps\\.googleusercontent\\.com$", var.inbox_oauth_client_id))
    error_message = "inbox_oauth_client_id must be an OAuth client ID such as 1234567890-abc.apps.googleusercontent.com."
  }
}

variable "inbox_custom_url" {
  type        = string
  description = "The inbox's own domain (https://inbox.example.com, mapped to the inbox service), if any; empty: its run.app URL (INBOX_URL). The sign-in redirect URI registered on the OAuth client is this URL plus /auth/google."
  default     = ""

  validation {
    condition     = var.inbox_custom_url == "" || can(regex("^https://[^/]+$", var.inbox_custom_url))
    error_message = "inbox_custom_url must be https://HOST without a path."
  }
}

variable "inbox_signin_script_url" {
  type        = string
  description = "The Sign in with Google client script the inbox page loads (INBOX_SIGNIN_SCRIPT_URL); Google's unless a stand-in is used locally."
  default     = "https://accounts.google.com/gsi/client"
}

variable "inbox_operators" {
  type        = list(string)
  description = "E-mails of the deployment's operators (INBOX_OPERATORS): they see every business's inbox and the operations view (failures, dead letters, replay). Staff are listed per business in the profiles (staff:)."
  default     = []

  validation {
    condition     = alltrue([for e in var.inbox_operators : can(regex("^[^@\\s,]+@[^@\\s,]+$", e))])
    error_message = "each inbox_operators entry must be an e-mail address."
  }
}

variable "inbox_session_seconds" {
  type        = number
  description = "How long an inbox session lasts from sign-in, in seconds (INBOX_SESSION_SECONDS); never extended by use."
  default     = 28800

  validation {
    condition     = var.inbox_session_seconds >= 300 && var.inbox_session_seconds <= 604800
    error_message = "inbox_session_seconds must be between 300 and 604800."
  }
}

variable "inbox_poll_seconds" {
  type        = number
  description = "How often an open inbox asks for new messages, in seconds (INBOX_POLL_SECONDS); each poll costs one Firestore read when nothing changed."
  default     = 3

  validation {
    condition     = var.inbox_poll_seconds >= 1 && var.inbox_poll_seconds <= 60
    error_message = "inbox_poll_seconds must be between 1 and 60."
  }
}

variable "model_prices" {
  type        = string
  description = "The price table of the estimated cost, JSON {\"model\": {\"input\": USD per 1M tokens, \"output\": ..., \"minute\": USD per audio minute}} over the default table (env MODEL_PRICES; empty: the defaults, docs/configuration.md)."
  default     = ""
}

variable "usage_shards" {
  type        = number
  description = "Counter shards per business and month: the usage counters take about one write a second per shard (env USAGE_SHARDS)."
  default     = 20

  validation {
    condition     = var.usage_shards >= 1 && var.usage_shards <= 500
    error_message = "usage_shards must be between 1 and 500 (the range shared/config.py accepts)."
  }
}

variable "usage_counters" {
  type        = string
  description = "Which businesses the usage counters count: budgeted (those with a budget) or all (one more document write per model answer) (env USAGE_COUNTERS)."
  default     = "budgeted"

  validation {
    condition     = contains(["budgeted", "all"], var.usage_counters)
    error_message = "usage_counters must be budgeted or all."
  }
}

variable "budget_cache_seconds" {
  type        = number
  description = "How long a processor instance trusts a budgeted business's spend before reading its counters again (env BUDGET_CACHE_SECONDS)."
  default     = 30

  validation {
    condition     = var.budget_cache_seconds >= 0 && var.budget_cache_seconds <= 3600
    error_message = "budget_cache_seconds must be between 0 and 3600 (the range shared/config.py accepts)."
  }
}

variable "send_lanes" {
  type        = list(string)
  description = "Cloud Tasks queues of one business number each (env SEND_LANES of the profiles build): profiles-apply assigns every number a lane and sets its rate to the profile's send_rate_per_second. A business beyond the list sends through tasks_queue. Empty: every business shares tasks_queue."
  default     = ["outbound-00", "outbound-01", "outbound-02", "outbound-03", "outbound-04", "outbound-05", "outbound-06", "outbound-07", "outbound-08", "outbound-09"]

  validation {
    condition     = length(var.send_lanes) <= 100 && length(distinct(var.send_lanes)) == length(var.send_lanes) && alltrue([for lane in var.send_lanes : can(regex("^[A-Za-z0-9-]{1,100}$", lane))])
    error_message = "send_lanes must be at most 100 distinct queue ids of letters, digits and hyphens."
  }
}

variable "send_rate_per_second" {
  type        = number
  description = "Send rate of a business whose profile sets no send_rate_per_second (env SEND_RATE_PER_SECOND of the profiles build), and each lane's rate until a business is assigned to it."
  default     = 20

  validation {
    condition     = var.send_rate_per_second >= 0.01 && var.send_rate_per_second <= 500
    error_message = "send_rate_per_second must be between 0.01 and 500 (Cloud Tasks' limit)."
  }
}
