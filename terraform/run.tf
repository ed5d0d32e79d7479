# Three Cloud Run services from one image; FUNCTION_SOURCE / FUNCTION_TARGET
# (locals.tf) choose the function each one runs.
#
# Who may call what:
#   webhook   - public (allUsers): Twilio cannot present a Google identity;
#               webhook_fn checks Twilio's signature instead.
#   processor - internal ingress, invoker = the Pub/Sub push identity only.
#   sender    - internal ingress, invoker = the Cloud Tasks identity only.
# Pub/Sub push and Cloud Tasks in the same project count as internal traffic,
# so "internal only" ingress does not block them. Both private services also
# verify the OIDC token in code (shared/auth.py).

resource "google_cloud_run_v2_service" "webhook" {
  project             = var.project_id
  name                = local.service_names.webhook
  location            = var.region
  description         = "Twilio WhatsApp webhook: validates the signature, publishes to Pub/Sub."
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection

  template {
    service_account                  = google_service_account.webhook.email
    timeout                          = "30s"
    max_instance_request_concurrency = var.concurrency.webhook

    scaling {
      min_instance_count = var.min_instances.webhook
      max_instance_count = var.max_instances.webhook
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

      dynamic "env" {
        for_each = local.env.webhook
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
      error_message = "image_tag is required to deploy the services (only the bootstrap apply may leave it empty)."
    }
  }

  depends_on = [
    google_project_service.enabled,
    google_secret_manager_secret_iam_member.twilio_token_webhook,
    google_pubsub_topic_iam_member.webhook_publisher,
  ]
}

resource "google_cloud_run_v2_service" "processor" {
  project             = var.project_id
  name                = local.service_names.processor
  location            = var.region
  description         = "Pub/Sub push target: conversation in Firestore, OpenAI, reply task."
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.deletion_protection

  template {
    service_account = google_service_account.processor.email
    # A push delivery lasts at most the ack deadline; the request may not be
    # cut shorter than that.
    timeout                          = "${var.processor_ack_deadline_seconds}s"
    max_instance_request_concurrency = var.concurrency.processor

    scaling {
      min_instance_count = var.min_instances.processor
      max_instance_count = var.max_instances.processor
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

      dynamic "env" {
        for_each = local.env.processor
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
      error_message = "image_tag is required to deploy the services (only the bootstrap apply may leave it empty)."
    }
  }

  depends_on = [
    google_project_service.enabled,
    google_secret_manager_secret_iam_member.openai_key_processor,
    google_project_iam_member.firestore_user,
    google_cloud_tasks_queue_iam_member.processor_enqueuer,
    google_service_account_iam_member.processor_acts_as_tasks_invoker,
  ]
}

resource "google_cloud_run_v2_service" "sender" {
  project             = var.project_id
  name                = local.service_names.sender
  location            = var.region
  description         = "Cloud Tasks target: sends one reply through Twilio."
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.deletion_protection

  template {
    service_account                  = google_service_account.sender.email
    timeout                          = "60s"
    max_instance_request_concurrency = var.concurrency.sender

    scaling {
      min_instance_count = var.min_instances.sender
      max_instance_count = var.max_instances.sender
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

      dynamic "env" {
        for_each = local.env.sender
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
      error_message = "image_tag is required to deploy the services (only the bootstrap apply may leave it empty)."
    }
  }

  depends_on = [
    google_project_service.enabled,
    google_secret_manager_secret_iam_member.twilio_token_sender,
    google_project_iam_member.firestore_user,
  ]
}

# ------------------------------------------------------------- invokers ---

resource "google_cloud_run_v2_service_iam_member" "webhook_public" {
  #checkov:skip=CKV_GCP_102:The webhook must be public: Twilio cannot present a Google identity. webhook_fn rejects any request without a valid Twilio signature (X-Twilio-Signature over the configured public URL).
  project  = var.project_id
  location = google_cloud_run_v2_service.webhook.location
  name     = google_cloud_run_v2_service.webhook.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "processor_invoker" {
  project  = var.project_id
  location = google_cloud_run_v2_service.processor.location
  name     = google_cloud_run_v2_service.processor.name
  role     = "roles/run.invoker"
  member   = google_service_account.pubsub_push.member
}

resource "google_cloud_run_v2_service_iam_member" "sender_invoker" {
  project  = var.project_id
  location = google_cloud_run_v2_service.sender.location
  name     = google_cloud_run_v2_service.sender.name
  role     = "roles/run.invoker"
  member   = google_service_account.tasks_invoker.member
}
