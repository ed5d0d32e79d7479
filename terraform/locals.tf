locals {
  image = "${var.region}-docker.pkg.dev/${var.project_id}/${var.artifact_repository}/${var.image_name}:${var.image_tag}"

  service_names = {
    webhook    = "${var.name_prefix}-webhook"
    processor  = "${var.name_prefix}-processor"
    sender     = "${var.name_prefix}-sender"
    reconciler = "${var.name_prefix}-reconciler"
    outbound   = "${var.name_prefix}-outbound"
    inbox      = "${var.name_prefix}-inbox"
  }

  # Cloud Run's deterministic URL (https://SERVICE-PROJECT_NUMBER.REGION.run.app)
  # is known before the service exists. Using it instead of the resource's
  # `uri` lets a service carry its own URL (webhook signature check, OIDC
  # audience) without a dependency cycle.
  run_urls = {
    for key, name in local.service_names :
    key => "https://${name}-${data.google_project.this.number}.${var.region}.run.app"
  }

  webhook_public_url  = var.webhook_custom_url != "" ? var.webhook_custom_url : local.run_urls.webhook
  processor_audience  = local.run_urls.processor
  sender_url          = local.run_urls.sender
  reconciler_audience = local.run_urls.reconciler
  outbound_audience   = local.run_urls.outbound
  # Where staff open the inbox; Google posts the sign-in to its /auth/google (docs/deploy.md, step 6).
  inbox_public_url = var.inbox_custom_url != "" ? var.inbox_custom_url : local.run_urls.inbox

  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  dead_letter_topic = "${var.inbound_topic}-dead-letter"
  dead_letter_hold  = "${var.inbound_topic}-dead-letter-hold"
  processor_push    = "${var.inbound_topic}-processor"

  # Pub/Sub push cannot send headers: the caller key is a query parameter of
  # the push endpoint. The token's audience stays the bare service URL.
  processor_push_endpoint = "${local.processor_audience}/?caller_key=${random_password.caller_key.result}"

  # How long the inbound subscription keeps an unacknowledged message, i.e.
  # the latest a redelivery can arrive; the dedupe horizon must cover it.
  inbound_retention_seconds = 604800

  # Firestore collections, named once: the TTL policies (firestore.tf) and
  # the services' environment must agree, and renaming one per environment
  # would strand its documents, so these are not variables.
  collections = {
    conversations = "conversations"
    failures      = "failed_messages"
    dedupe        = "seen_messages"
    usage         = "usage_counters"
    budget_alerts = "budget_alerts"
  }

  # Every name here is read by shared/config.py, except FUNCTION_* and THREADS,
  # which functions-framework reads itself. Plain maps (no merge()) so the
  # tests in tests/infra can read each service's environment from the HCL.
  # Every setting that changes behaviour comes from a variable, so each
  # environment's tfvars can set it; an empty value is not passed at all
  # (run.tf), so the application's default applies.
  #
  # shared/config.py checks at start-up that MODEL_BUDGET_SECONDS is below
  # PROCESSING_LEASE_SECONDS and LIVENESS_SECONDS above the lease plus twice
  # TWILIO_TIMEOUT_SECONDS plus 5 s. The three services that read any of
  # them get all four, so every instance checks the same values, the ones
  # the preconditions in pubsub.tf check at plan time.
  env = {
    webhook = {
      FUNCTION_SOURCE                 = "webhook_fn/main.py"
      FUNCTION_TARGET                 = "webhook"
      FUNCTION_SIGNATURE_TYPE         = "http"
      THREADS                         = tostring(var.concurrency.webhook)
      GOOGLE_CLOUD_PROJECT            = var.project_id
      LOG_LEVEL                       = var.log_level
      SECRET_SOURCE                   = "secretmanager" #checkov:skip=CKV_SECRET_6:Names where secrets are read from; not a secret.
      TWILIO_AUTH_TOKEN_SECRET        = google_secret_manager_secret.secret["twilio_auth_token"].secret_id
      ADDRESS_HASH_KEY_SECRET         = google_secret_manager_secret.secret["address_hash_key"].secret_id
      SECRET_REFRESH_INTERVAL_SECONDS = tostring(var.secret_refresh_interval_seconds)
      SECRET_OVERLAP_SECONDS          = tostring(var.secret_overlap_seconds)
      PUBLIC_WEBHOOK_URL              = local.webhook_public_url
      TRUST_FORWARDED_HEADERS         = tostring(var.trust_forwarded_headers)
      PUBSUB_TOPIC                    = google_pubsub_topic.inbound.name
      WEBHOOK_MAX_BODY_BYTES          = tostring(var.webhook_max_body_bytes)
      PUBLISH_MAX_LATENCY_SECONDS     = tostring(var.publish_max_latency_seconds)
      DELIVERY_STATUS_CALLBACKS       = tostring(var.delivery_status_callbacks)
      LOG_USAGE                       = tostring(var.log_usage)
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
      ADDRESS_HASH_KEY_SECRET         = google_secret_manager_secret.secret["address_hash_key"].secret_id
      SECRET_REFRESH_INTERVAL_SECONDS = tostring(var.secret_refresh_interval_seconds)
      SECRET_OVERLAP_SECONDS          = tostring(var.secret_overlap_seconds)
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
      # The send lanes (terraform/tasks.tf): the profiles build sets their rates with these. Semicolons: the
      # build's substitutions are separated by commas.
      SEND_LANES           = length(var.send_lanes) == 0 ? "none" : join(";", var.send_lanes)
      SEND_RATE_PER_SECOND = tostring(var.send_rate_per_second)
      SENDER_MPS_LIMIT     = tostring(var.twilio_sender_mps_limit)
      AUTH_AUDIENCE        = local.processor_audience
      # Pub/Sub pushes messages; Cloud Tasks delivers bursts' answer tasks (docs/decisions/0014-bursts.md).
      AUTH_ALLOWED_SERVICE_ACCOUNTS = join(",", [google_service_account.identity["pubsub_push"].email, google_service_account.identity["tasks_invoker"].email])
      CALLER_PROOF                  = "caller-key"
      CALLER_KEY_SECRET             = google_secret_manager_secret.secret["caller_key"].secret_id
      PROCESSOR_URL                 = local.processor_audience
      CONVERSATIONS_COLLECTION      = local.collections.conversations
      FAILURES_COLLECTION           = local.collections.failures
      DEDUPE_COLLECTION             = local.collections.dedupe
      DEDUPE_HORIZON_SECONDS        = tostring(var.dedupe_horizon_seconds)
      MODEL_BUDGET_SECONDS          = tostring(var.model_budget_seconds)
      OPENAI_MAX_TOKENS             = tostring(var.openai_max_tokens)
      MAX_TOOL_ROUNDS               = tostring(var.max_tool_rounds)
      TOOL_RESPONSE_MAX_BYTES       = tostring(var.tool_response_max_bytes)
      OPENAI_BASE_URL               = var.openai_base_url
      SYSTEM_PROMPT                 = var.system_prompt
      FALLBACK_REPLY                = var.fallback_reply
      MAX_INBOUND_CHARS             = tostring(var.max_inbound_chars)
      MAX_HISTORY_CHARS             = tostring(var.max_history_chars)
      MAX_REPLY_CHARS               = tostring(var.max_reply_chars)
      MAX_OPEN_MESSAGES             = tostring(var.max_open_messages)
      LIVENESS_SECONDS              = tostring(var.liveness_seconds)
      RECONCILE_AFTER_SECONDS       = tostring(var.reconcile_after_seconds)
      TWILIO_TIMEOUT_SECONDS        = tostring(var.twilio_timeout_seconds)
      TWILIO_ACCOUNT_SID            = var.twilio_account_sid
      TWILIO_WHATSAPP_FROM          = var.twilio_whatsapp_from
      TWILIO_AUTH_TOKEN_SECRET      = google_secret_manager_secret.secret["twilio_auth_token"].secret_id
      TWILIO_API_BASE_URL           = var.twilio_api_base_url
      TWILIO_MESSAGING_BASE_URL     = var.twilio_messaging_base_url
      TWILIO_MEDIA_REDIRECT_HOSTS   = var.twilio_media_redirect_hosts
      MEDIA_MAX_BYTES               = tostring(var.media_max_bytes)
      MEDIA_TIMEOUT_SECONDS         = tostring(var.media_timeout_seconds)
      OPENAI_VISION_MODEL           = var.openai_vision_model
      OPENAI_TRANSCRIBE_MODEL       = var.openai_transcribe_model
      TYPING_INDICATOR              = tostring(var.typing_indicator)
      BURST_WINDOW_SECONDS          = tostring(var.burst_window_seconds)
      RATE_LIMIT_MESSAGES           = tostring(var.rate_limit_messages)
      RATE_LIMIT_WINDOW_SECONDS     = tostring(var.rate_limit_window_seconds)
      HANDOFF_PAUSE_SECONDS         = tostring(var.handoff_pause_seconds)
      PROFILES_COLLECTION           = var.profiles_collection
      PROFILE_CACHE_SECONDS         = tostring(var.profile_cache_seconds)
      # A handoff's notice task goes to the inbox (docs/decisions/0021-inbox-sign-in.md).
      INBOX_TASKS_URL = local.run_urls.inbox
      # The knowledge base (knowledge.tf); the profiles build gets the same values.
      OPENAI_EMBEDDING_MODEL       = var.openai_embedding_model
      OPENAI_EMBEDDING_DIMENSIONS  = tostring(var.openai_embedding_dimensions)
      KNOWLEDGE_COLLECTION         = var.knowledge_collection
      KNOWLEDGE_TOP_K              = tostring(var.knowledge_top_k)
      KNOWLEDGE_MAX_DISTANCE       = tostring(var.knowledge_max_distance)
      KNOWLEDGE_PROMPT_TOKENS      = tostring(var.knowledge_prompt_tokens)
      KNOWLEDGE_CHUNK_CHARS        = tostring(var.knowledge_chunk_chars)
      KNOWLEDGE_MAX_CHUNKS         = tostring(var.knowledge_max_chunks)
      KNOWLEDGE_MAX_DOCUMENT_BYTES = tostring(var.knowledge_max_document_bytes)
      LOG_USAGE                    = tostring(var.log_usage)
      # Usage and budgets (docs/decisions/0024-usage-and-budgets.md).
      MODEL_PRICES             = var.model_prices
      USAGE_COLLECTION         = local.collections.usage
      BUDGET_ALERTS_COLLECTION = local.collections.budget_alerts
      USAGE_SHARDS             = tostring(var.usage_shards)
      USAGE_COUNTERS           = var.usage_counters
      BUDGET_CACHE_SECONDS     = tostring(var.budget_cache_seconds)
    }

    sender = {
      FUNCTION_SOURCE                 = "sender_fn/main.py"
      FUNCTION_TARGET                 = "send"
      FUNCTION_SIGNATURE_TYPE         = "http"
      THREADS                         = tostring(var.concurrency.sender)
      GOOGLE_CLOUD_PROJECT            = var.project_id
      LOG_LEVEL                       = var.log_level
      SECRET_SOURCE                   = "secretmanager" #checkov:skip=CKV_SECRET_6:Names where secrets are read from; not a secret.
      TWILIO_AUTH_TOKEN_SECRET        = google_secret_manager_secret.secret["twilio_auth_token"].secret_id
      ADDRESS_HASH_KEY_SECRET         = google_secret_manager_secret.secret["address_hash_key"].secret_id
      SECRET_REFRESH_INTERVAL_SECONDS = tostring(var.secret_refresh_interval_seconds)
      SECRET_OVERLAP_SECONDS          = tostring(var.secret_overlap_seconds)
      FIRESTORE_DATABASE              = google_firestore_database.main.name
      TWILIO_ACCOUNT_SID              = var.twilio_account_sid
      TWILIO_WHATSAPP_FROM            = var.twilio_whatsapp_from
      SEND_MAX_ATTEMPTS               = tostring(var.send_max_attempts)
      AUTH_AUDIENCE                   = local.sender_url
      AUTH_ALLOWED_SERVICE_ACCOUNTS   = google_service_account.identity["tasks_invoker"].email
      CALLER_PROOF                    = "caller-key"
      CALLER_KEY_SECRET               = google_secret_manager_secret.secret["caller_key"].secret_id
      SENDER_URL                      = local.sender_url
      TASKS_QUEUE                     = google_cloud_tasks_queue.outbound.name
      TASKS_LOCATION                  = google_cloud_tasks_queue.outbound.location
      TASKS_SERVICE_ACCOUNT           = google_service_account.identity["tasks_invoker"].email
      CONVERSATIONS_COLLECTION        = local.collections.conversations
      FAILURES_COLLECTION             = local.collections.failures
      TWILIO_TIMEOUT_SECONDS          = tostring(var.twilio_timeout_seconds)
      TWILIO_API_BASE_URL             = var.twilio_api_base_url
      TWILIO_CONTENT_BASE_URL         = var.twilio_content_base_url
      CONTENT_COLLECTION              = var.content_collection
      PUBLIC_WEBHOOK_URL              = local.webhook_public_url
      DELIVERY_STATUS_CALLBACKS       = tostring(var.delivery_status_callbacks)
      REENGAGEMENT_CONTENT_SID        = var.reengagement_content_sid
      LIVENESS_SECONDS                = tostring(var.liveness_seconds)
      RECONCILE_AFTER_SECONDS         = tostring(var.reconcile_after_seconds)
      PROCESSING_LEASE_SECONDS        = tostring(var.processor_ack_deadline_seconds)
      MODEL_BUDGET_SECONDS            = tostring(var.model_budget_seconds)
      LOG_USAGE                       = tostring(var.log_usage)
    }

    # Finishes messages stuck past their deadline: re-creates the reply task
    # for sender_fn (as the tasks invoker) or records the failure. Called
    # only by Cloud Scheduler (scheduler.tf). It reads no credential: only
    # the address hash key and the caller key.
    reconciler = {
      FUNCTION_SOURCE               = "processor_fn/main.py"
      FUNCTION_TARGET               = "reconcile"
      FUNCTION_SIGNATURE_TYPE       = "http"
      THREADS                       = tostring(var.concurrency.reconciler)
      GOOGLE_CLOUD_PROJECT          = var.project_id
      LOG_LEVEL                     = var.log_level
      SECRET_SOURCE                 = "secretmanager" #checkov:skip=CKV_SECRET_6:Names where secrets are read from; not a secret.
      ADDRESS_HASH_KEY_SECRET       = google_secret_manager_secret.secret["address_hash_key"].secret_id
      FIRESTORE_DATABASE            = google_firestore_database.main.name
      CONVERSATIONS_COLLECTION      = local.collections.conversations
      FAILURES_COLLECTION           = local.collections.failures
      SENDER_URL                    = local.sender_url
      TASKS_QUEUE                   = google_cloud_tasks_queue.outbound.name
      TASKS_LOCATION                = google_cloud_tasks_queue.outbound.location
      TASKS_SERVICE_ACCOUNT         = google_service_account.identity["tasks_invoker"].email
      AUTH_AUDIENCE                 = local.reconciler_audience
      PROCESSOR_URL                 = local.processor_audience
      AUTH_ALLOWED_SERVICE_ACCOUNTS = google_service_account.identity["scheduler"].email
      CALLER_PROOF                  = "caller-key"
      CALLER_KEY_SECRET             = google_secret_manager_secret.secret["caller_key"].secret_id
      LIVENESS_SECONDS              = tostring(var.liveness_seconds)
      RECONCILE_AFTER_SECONDS       = tostring(var.reconcile_after_seconds)
      TWILIO_TIMEOUT_SECONDS        = tostring(var.twilio_timeout_seconds)
      SEND_MAX_ATTEMPTS             = tostring(var.send_max_attempts)
      PROCESSING_LEASE_SECONDS      = tostring(var.processor_ack_deadline_seconds)
      MODEL_BUDGET_SECONDS          = tostring(var.model_budget_seconds)
    }

    # The outbound API (docs/decisions/0013-outbound-api.md): records a
    # business-initiated message and creates its send task as the processor
    # does. Callers: outbound_invokers, verified by their OIDC token, whose
    # signature is checked in code (CALLER_PROOF signed-token: business
    # systems cannot know the caller key, so they send the token in
    # X-Serverless-Authorization too). It reads no credential: only the
    # address hash key and the caller key (for its tasks).
    outbound = {
      FUNCTION_SOURCE               = "webhook_fn/main.py"
      FUNCTION_TARGET               = "outbound"
      FUNCTION_SIGNATURE_TYPE       = "http"
      THREADS                       = tostring(var.concurrency.outbound)
      GOOGLE_CLOUD_PROJECT          = var.project_id
      LOG_LEVEL                     = var.log_level
      SECRET_SOURCE                 = "secretmanager" #checkov:skip=CKV_SECRET_6:Names where secrets are read from; not a secret.
      ADDRESS_HASH_KEY_SECRET       = google_secret_manager_secret.secret["address_hash_key"].secret_id
      FIRESTORE_DATABASE            = google_firestore_database.main.name
      CONVERSATIONS_COLLECTION      = local.collections.conversations
      FAILURES_COLLECTION           = local.collections.failures
      DEDUPE_COLLECTION             = local.collections.dedupe
      DEDUPE_HORIZON_SECONDS        = tostring(var.dedupe_horizon_seconds)
      SENDER_URL                    = local.sender_url
      TASKS_QUEUE                   = google_cloud_tasks_queue.outbound.name
      TASKS_LOCATION                = google_cloud_tasks_queue.outbound.location
      TASKS_SERVICE_ACCOUNT         = google_service_account.identity["tasks_invoker"].email
      AUTH_AUDIENCE                 = local.outbound_audience
      AUTH_ALLOWED_SERVICE_ACCOUNTS = join(",", var.outbound_allowed_service_accounts)
      OUTBOUND_CALLERS              = jsonencode(var.outbound_caller_businesses)
      PROFILES_COLLECTION           = var.profiles_collection
      CALLER_PROOF                  = "signed-token"
      CALLER_KEY_SECRET             = google_secret_manager_secret.secret["caller_key"].secret_id
      TWILIO_WHATSAPP_FROM          = var.twilio_whatsapp_from
      CONVERSATION_TTL_SECONDS      = tostring(var.conversation_ttl_seconds)
      MAX_CONTEXT_MESSAGES          = tostring(var.max_context_messages)
      MAX_HISTORY_CHARS             = tostring(var.max_history_chars)
      MAX_REPLY_CHARS               = tostring(var.max_reply_chars)
      MAX_OPEN_MESSAGES             = tostring(var.max_open_messages)
      LIVENESS_SECONDS              = tostring(var.liveness_seconds)
      RECONCILE_AFTER_SECONDS       = tostring(var.reconcile_after_seconds)
      TWILIO_TIMEOUT_SECONDS        = tostring(var.twilio_timeout_seconds)
      PROCESSING_LEASE_SECONDS      = tostring(var.processor_ack_deadline_seconds)
      MODEL_BUDGET_SECONDS          = tostring(var.model_budget_seconds)
      LOG_USAGE                     = tostring(var.log_usage)
    }

    # The business's inbox (docs/decisions/0021-inbox-sign-in.md): staff sign in
    # with Google and read the conversations of the businesses whose profile
    # lists them (staff:); operators also see failures and replay dead
    # letters (the hold subscription, the inbound topic). It reads the
    # address hash key (conversation ids), the session key, and the caller
    # key for the tasks it creates.
    inbox = {
      FUNCTION_SOURCE                      = "inbox_fn/main.py"
      FUNCTION_TARGET                      = "inbox"
      FUNCTION_SIGNATURE_TYPE              = "http"
      THREADS                              = tostring(var.concurrency.inbox)
      GOOGLE_CLOUD_PROJECT                 = var.project_id
      LOG_LEVEL                            = var.log_level
      SECRET_SOURCE                        = "secretmanager" #checkov:skip=CKV_SECRET_6:Names where secrets are read from; not a secret.
      ADDRESS_HASH_KEY_SECRET              = google_secret_manager_secret.secret["address_hash_key"].secret_id
      CALLER_KEY_SECRET                    = google_secret_manager_secret.secret["caller_key"].secret_id
      INBOX_SESSION_KEY_SECRET             = google_secret_manager_secret.secret["inbox_session_key"].secret_id
      SECRET_REFRESH_INTERVAL_SECONDS      = tostring(var.secret_refresh_interval_seconds)
      SECRET_OVERLAP_SECONDS               = tostring(var.secret_overlap_seconds)
      FIRESTORE_DATABASE                   = google_firestore_database.main.name
      CONVERSATIONS_COLLECTION             = local.collections.conversations
      FAILURES_COLLECTION                  = local.collections.failures
      DEDUPE_COLLECTION                    = local.collections.dedupe
      DEDUPE_HORIZON_SECONDS               = tostring(var.dedupe_horizon_seconds)
      PROFILES_COLLECTION                  = var.profiles_collection
      PROFILE_CACHE_SECONDS                = tostring(var.profile_cache_seconds)
      TWILIO_WHATSAPP_FROM                 = var.twilio_whatsapp_from
      SENDER_URL                           = local.sender_url
      TASKS_QUEUE                          = google_cloud_tasks_queue.outbound.name
      TASKS_LOCATION                       = google_cloud_tasks_queue.outbound.location
      TASKS_SERVICE_ACCOUNT                = google_service_account.identity["tasks_invoker"].email
      PUBSUB_TOPIC                         = google_pubsub_topic.inbound.name
      PUBSUB_DEAD_LETTER_HOLD_SUBSCRIPTION = google_pubsub_subscription.dead_letter_hold.name
      CONVERSATION_TTL_SECONDS             = tostring(var.conversation_ttl_seconds)
      MAX_CONTEXT_MESSAGES                 = tostring(var.max_context_messages)
      MAX_HISTORY_CHARS                    = tostring(var.max_history_chars)
      MAX_REPLY_CHARS                      = tostring(var.max_reply_chars)
      MAX_OPEN_MESSAGES                    = tostring(var.max_open_messages)
      LIVENESS_SECONDS                     = tostring(var.liveness_seconds)
      RECONCILE_AFTER_SECONDS              = tostring(var.reconcile_after_seconds)
      TWILIO_TIMEOUT_SECONDS               = tostring(var.twilio_timeout_seconds)
      PROCESSING_LEASE_SECONDS             = tostring(var.processor_ack_deadline_seconds)
      MODEL_BUDGET_SECONDS                 = tostring(var.model_budget_seconds)
      INBOX_URL                            = local.inbox_public_url
      INBOX_OAUTH_CLIENT_ID                = var.inbox_oauth_client_id
      INBOX_SIGNIN_SCRIPT_URL              = var.inbox_signin_script_url
      INBOX_OPERATORS                      = join(",", var.inbox_operators)
      INBOX_SESSION_SECONDS                = tostring(var.inbox_session_seconds)
      INBOX_POLL_SECONDS                   = tostring(var.inbox_poll_seconds)
      # Its one private endpoint, /tasks/notify: Cloud Tasks' token and caller key, as the sender checks them.
      AUTH_AUDIENCE                 = local.run_urls.inbox
      AUTH_ALLOWED_SERVICE_ACCOUNTS = google_service_account.identity["tasks_invoker"].email
      CALLER_PROOF                  = "caller-key"
      LOG_USAGE                     = tostring(var.log_usage)
    }
  }
}
