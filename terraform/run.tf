# Six Cloud Run services from one image; FUNCTION_SOURCE / FUNCTION_TARGET
# (locals.tf) choose the function each one runs.
#
# Who may call what:
#   webhook    - public (allUsers): Twilio cannot present a Google identity;
#                webhook_fn checks Twilio's signature instead.
#   processor  - internal ingress, invoker = the Pub/Sub push identity only.
#   sender     - internal ingress, invoker = the Cloud Tasks identity only.
#   reconciler - internal ingress, invoker = the Cloud Scheduler identity only.
#   outbound   - public ingress (the business's systems may run anywhere),
#                invoker = var.outbound_invokers only (default nobody); the
#                caller's ID token is also verified in code, signature included.
#   inbox      - public (allUsers): staff's browsers cannot present a Google
#                identity to Cloud Run; the inbox signs them in itself (Sign
#                in with Google, docs/decisions/0021-inbox-sign-in.md) and
#                shows each only their businesses' conversations.
# Pub/Sub push, Cloud Tasks and Cloud Scheduler in the same project, calling
# the run.app URL, count as internal traffic (Cloud Run, "Restrict network
# ingress": the Internal setting allows these products), so "internal only"
# ingress does not block them. Cloud Run forwards the token without its
# signature, so the processor, sender and reconciler also check the caller
# key those products carry (shared/adapters/google_auth.py,
# docs/decisions/0003-caller-verification.md).

locals {
  # What differs between the services; their identities, environment
  # (locals.tf) and scaling variables are looked up by the same key.
  services = {
    webhook = {
      description = "Twilio WhatsApp webhook: validates the signature, publishes to Pub/Sub."
      ingress     = "INGRESS_TRAFFIC_ALL"
      timeout     = "30s"
    }
    processor = {
      description = "Pub/Sub push target: conversation in Firestore, OpenAI, reply task."
      ingress     = "INGRESS_TRAFFIC_INTERNAL_ONLY"
      # A push delivery lasts at most the ack deadline; the request may not be
      # cut shorter than that.
      timeout = "${var.processor_ack_deadline_seconds}s"
    }
    sender = {
      description = "Cloud Tasks target: sends one reply through Twilio."
      ingress     = "INGRESS_TRAFFIC_INTERNAL_ONLY"
      timeout     = "60s"
    }
    reconciler = {
      description = "Cloud Scheduler target: finishes messages stuck past their deadline."
      ingress     = "INGRESS_TRAFFIC_INTERNAL_ONLY"
      # One run per minute; a run may not outlast the interval, or two would
      # overlap (the scheduler job's attempt deadline is the same).
      timeout = "${local.reconcile_run_seconds}s"
    }
    outbound = {
      description = "Outbound API: the business's systems send a WhatsApp message to a user."
      ingress     = "INGRESS_TRAFFIC_ALL"
      timeout     = "30s"
    }
    inbox = {
      description = "The business's inbox: staff sign in with Google and answer the conversations handed to them."
      ingress     = "INGRESS_TRAFFIC_ALL"
      # A replay of the operators' view pulls and republishes up to 100 held messages.
      timeout = "60s"
    }
  }

  reconcile_run_seconds = 60
}

resource "google_cloud_run_v2_service" "service" {
  for_each = local.services

  project             = var.project_id
  name                = local.service_names[each.key]
  location            = var.region
  description         = each.value.description
  ingress             = each.value.ingress
  deletion_protection = var.deletion_protection

  template {
    service_account                  = google_service_account.identity[each.key].email
    timeout                          = each.value.timeout
    max_instance_request_concurrency = var.concurrency[each.key]

    scaling {
      min_instance_count = var.min_instances[each.key]
      max_instance_count = var.max_instances[each.key]
    }

    containers {
      image = local.image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
        cpu_idle          = true
        startup_cpu_boost = true
      }

      # Empty values are left out so the application's own default applies
      # (an optional URL, or the built-in persona).
      dynamic "env" {
        for_each = { for name, value in local.env[each.key] : name => value if value != "" }
        content {
          name  = env.key
          value = env.value
        }
      }
    }
  }

  traffic {
    type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    percent = 100
  }

  lifecycle {
    precondition {
      condition     = var.image_tag != ""
      error_message = "image_tag is required to deploy the services (only the phase-one apply of docs/deploy.md, step 5, may leave it empty)."
    }
  }

  # The grants a first revision needs to start (secrets, Firestore, topic,
  # queue). depends_on cannot differ per instance, so each service also waits
  # for the other services' grants: that changes only the order of creation.
  depends_on = [
    google_project_service.enabled,
    google_secret_manager_secret_iam_member.accessor,
    google_secret_manager_secret_iam_member.caller_key_accessor,
    google_secret_manager_secret_version.caller_key,
    google_project_iam_member.firestore_user,
    google_pubsub_topic_iam_member.webhook_publisher,
    google_cloud_tasks_queue_iam_member.enqueuer,
    google_service_account_iam_member.acts_as_tasks_invoker,
  ]
}

# ------------------------------------------------------------- invokers ---

resource "google_cloud_run_v2_service_iam_member" "webhook_public" {
  #checkov:skip=CKV_GCP_102:The webhook must be public: Twilio cannot present a Google identity. webhook_fn rejects any request without a valid Twilio signature (X-Twilio-Signature over the configured public URL).
  project  = var.project_id
  location = google_cloud_run_v2_service.service["webhook"].location
  name     = google_cloud_run_v2_service.service["webhook"].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "inbox_public" {
  #checkov:skip=CKV_GCP_102:The inbox must be public: staff's browsers cannot present a Google identity to Cloud Run. inbox_fn signs staff in with Google itself and refuses every request without a valid session (docs/decisions/0021-inbox-sign-in.md).
  project  = var.project_id
  location = google_cloud_run_v2_service.service["inbox"].location
  name     = google_cloud_run_v2_service.service["inbox"].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Each private service may be invoked by the one identity Google uses to call
# it. Kept apart from webhook_public so the public-access skip above covers
# the webhook alone.
resource "google_cloud_run_v2_service_iam_member" "private_invoker" {
  for_each = {
    processor  = google_service_account.identity["pubsub_push"].member
    sender     = google_service_account.identity["tasks_invoker"].member
    reconciler = google_service_account.identity["scheduler"].member
  }

  project  = var.project_id
  location = google_cloud_run_v2_service.service[each.key].location
  name     = google_cloud_run_v2_service.service[each.key].name
  role     = "roles/run.invoker"
  member   = each.value
}

# Cloud Tasks also calls the processor: the answer task of a burst, when
# BURST_WINDOW_SECONDS > 0 (docs/decisions/0014-bursts.md).
resource "google_cloud_run_v2_service_iam_member" "processor_burst_invoker" {
  project  = var.project_id
  location = google_cloud_run_v2_service.service["processor"].location
  name     = google_cloud_run_v2_service.service["processor"].name
  role     = "roles/run.invoker"
  member   = google_service_account.identity["tasks_invoker"].member
}

# The business's own systems that may send messages through the outbound API.
resource "google_cloud_run_v2_service_iam_member" "outbound_invoker" {
  for_each = toset(var.outbound_invokers)

  project  = var.project_id
  location = google_cloud_run_v2_service.service["outbound"].location
  name     = google_cloud_run_v2_service.service["outbound"].name
  role     = "roles/run.invoker"
  member   = each.value
}
