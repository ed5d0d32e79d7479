locals {
  image = "${var.region}-docker.pkg.dev/${var.project_id}/${var.artifact_repository}/${var.image_name}:${var.image_tag}"

  service_names = {
    webhook   = "${var.name_prefix}-webhook"
    processor = "${var.name_prefix}-processor"
    sender    = "${var.name_prefix}-sender"
  }

  # Cloud Run's deterministic URL (https://SERVICE-PROJECT_NUMBER.REGION.run.app)
  # is known before the service exists. Using it instead of the resource's
  # `uri` lets a service carry its own URL (webhook signature check, OIDC
  # audience) without a dependency cycle.
  run_urls = {
    for key, name in local.service_names :
    key => "https://${name}-${data.google_project.this.number}.${var.region}.run.app"
  }

  webhook_public_url = var.webhook_custom_url != "" ? var.webhook_custom_url : local.run_urls.webhook
  processor_audience = local.run_urls.processor
  sender_url         = local.run_urls.sender

  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  dead_letter_topic     = "${var.inbound_topic}-dead-letter"
  dead_letter_hold      = "${var.inbound_topic}-dead-letter-hold"
  processor_push        = "${var.inbound_topic}-processor"
  openai_attempts_total = var.openai_timeout_seconds * (var.openai_max_retries + 1)

  # Every name here is read by shared/config.py, except FUNCTION_* and THREADS,
  # which functions-framework reads itself. Plain maps (no merge()) so the
  # tests in tests/infra can read each service's environment from the HCL.
  env = {
    webhook = {
      FUNCTION_SOURCE          = "webhook_fn/main.py"
      FUNCTION_TARGET          = "webhook"
      FUNCTION_SIGNATURE_TYPE  = "http"
      THREADS                  = tostring(var.concurrency.webhook)
      GOOGLE_CLOUD_PROJECT     = var.project_id
      LOG_LEVEL                = var.log_level
      SECRET_SOURCE            = "secretmanager" #checkov:skip=CKV_SECRET_6:Names where secrets are read from; not a secret.
      TWILIO_AUTH_TOKEN_SECRET = google_secret_manager_secret.secret["twilio_auth_token"].secret_id
      PUBLIC_WEBHOOK_URL       = local.webhook_public_url
      TRUST_FORWARDED_HEADERS  = tostring(var.trust_forwarded_headers)
      PUBSUB_TOPIC             = google_pubsub_topic.inbound.name
    }

    processor = {
      FUNCTION_SOURCE                 = "processor_fn/main.py"
      FUNCTION_TARGET                 = "process"
      FUNCTION_SIGNATURE_TYPE         = "cloudevent"
      THREADS                         = tostring(var.concurrency.processor)
      GOOGLE_CLOUD_PROJECT            = var.project_id
      LOG_LEVEL                       = var.log_level
      SECRET_SOURCE                   = "secretmanager" #checkov:skip=CKV_SECRET_6:Names where secrets are read from; not a secret.
      OPENAI_API_KEY_SECRET           = google_secret_manager_secret.secret["openai_api_key"].secret_id
      FIRESTORE_DATABASE              = google_firestore_database.main.name
      PUBSUB_DEAD_LETTER_SUBSCRIPTION = var.dead_letter_subscription
      CONVERSATION_TTL_SECONDS        = tostring(var.conversation_ttl_seconds)
      MAX_CONTEXT_MESSAGES            = tostring(var.max_context_messages)
      PROCESSING_LEASE_SECONDS        = tostring(var.processor_ack_deadline_seconds)
      OPENAI_MODEL                    = var.openai_model
      OPENAI_TIMEOUT_SECONDS          = tostring(var.openai_timeout_seconds)
      OPENAI_MAX_RETRIES              = tostring(var.openai_max_retries)
      SENDER_URL                      = local.sender_url
      TASKS_QUEUE                     = google_cloud_tasks_queue.outbound.name
      TASKS_LOCATION                  = google_cloud_tasks_queue.outbound.location
      TASKS_SERVICE_ACCOUNT           = google_service_account.identity["tasks_invoker"].email
      AUTH_AUDIENCE                   = local.processor_audience
      AUTH_ALLOWED_SERVICE_ACCOUNTS   = google_service_account.identity["pubsub_push"].email
    }

    sender = {
      FUNCTION_SOURCE               = "sender_fn/main.py"
      FUNCTION_TARGET               = "send"
      FUNCTION_SIGNATURE_TYPE       = "http"
      THREADS                       = tostring(var.concurrency.sender)
      GOOGLE_CLOUD_PROJECT          = var.project_id
      LOG_LEVEL                     = var.log_level
      SECRET_SOURCE                 = "secretmanager" #checkov:skip=CKV_SECRET_6:Names where secrets are read from; not a secret.
      TWILIO_AUTH_TOKEN_SECRET      = google_secret_manager_secret.secret["twilio_auth_token"].secret_id
      FIRESTORE_DATABASE            = google_firestore_database.main.name
      TWILIO_ACCOUNT_SID            = var.twilio_account_sid
      TWILIO_WHATSAPP_FROM          = var.twilio_whatsapp_from
      SEND_MAX_ATTEMPTS             = tostring(var.send_max_attempts)
      AUTH_AUDIENCE                 = local.sender_url
      AUTH_ALLOWED_SERVICE_ACCOUNTS = google_service_account.identity["tasks_invoker"].email
    }
  }
}
