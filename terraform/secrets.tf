# The secrets exist here; their values never do. Operators add versions with
# `gcloud secrets versions add SECRET --data-file=-` (README.md, "Deploy"), so no
# value reaches this repository, a plan, or the Terraform state. Each secret
# is readable only by the services that need it.

resource "google_secret_manager_secret" "twilio_auth_token" {
  project   = var.project_id
  secret_id = var.twilio_auth_token_secret_id

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret" "openai_api_key" {
  project   = var.project_id
  secret_id = var.openai_api_key_secret_id

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

# webhook_fn checks Twilio's signature with the auth token.
resource "google_secret_manager_secret_iam_member" "twilio_token_webhook" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.twilio_auth_token.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.webhook.member
}

# sender_fn calls Twilio's API with the auth token.
resource "google_secret_manager_secret_iam_member" "twilio_token_sender" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.twilio_auth_token.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.sender.member
}

# processor_fn is the only caller of OpenAI.
resource "google_secret_manager_secret_iam_member" "openai_key_processor" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.openai_api_key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.processor.member
}
