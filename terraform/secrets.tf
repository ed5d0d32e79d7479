# The secrets exist here; the values of the three credentials and of the
# inbox's session key never do.
# Operators add their versions with `gcloud secrets versions add SECRET
# --data-file=-` (docs/deploy.md), so no credential reaches this repository,
# a plan, or the Terraform state. Each secret is readable only by the
# services that need it.
#
# The caller key is the exception, by necessity: Terraform writes it into the
# push endpoints (pubsub.tf) and the scheduler job's header (scheduler.tf),
# so Terraform generates it and it is in the state either way. It unlocks
# nothing outside this deployment and is only useful together with a way
# past Cloud Run's own check (docs/decisions/0003-caller-verification.md).
# Rotate it with `terraform apply -replace=random_password.caller_key`.

resource "google_secret_manager_secret" "secret" {
  for_each = {
    twilio_auth_token = var.twilio_auth_token_secret_id
    openai_api_key    = var.openai_api_key_secret_id
    address_hash_key  = var.address_hash_key_secret_id
    caller_key        = var.caller_key_secret_id
    inbox_session_key = var.inbox_session_key_secret_id
  }

  project   = var.project_id
  secret_id = each.value

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

# 256 bits, letters and digits only: it travels in a URL query string.
resource "random_password" "caller_key" {
  length  = 43
  special = false
}

resource "google_secret_manager_secret_version" "caller_key" {
  secret      = google_secret_manager_secret.secret["caller_key"].id
  secret_data = random_password.caller_key.result
}

# The one secret each service reads: webhook_fn checks Twilio's signature
# with the auth token, sender_fn calls Twilio's API with it, processor_fn
# is the only caller of OpenAI, and inbox_fn signs its sessions.
resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = {
    webhook   = "twilio_auth_token"
    sender    = "twilio_auth_token"
    processor = "openai_api_key"
    inbox     = "inbox_session_key"
  }

  project   = var.project_id
  secret_id = google_secret_manager_secret.secret[each.value].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.identity[each.key].member
}

# processor_fn downloads inbound media from Twilio with the account's
# credentials and asks Twilio for the typing indicator.
resource "google_secret_manager_secret_iam_member" "twilio_token_processor" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.secret["twilio_auth_token"].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.identity["processor"].member
}

# The private services check the caller key; every service that creates
# tasks (all but the webhook) writes it into each task's header.
resource "google_secret_manager_secret_iam_member" "caller_key_accessor" {
  for_each = {
    processor  = google_service_account.identity["processor"].member
    sender     = google_service_account.identity["sender"].member
    reconciler = google_service_account.identity["reconciler"].member
    inbox      = google_service_account.identity["inbox"].member
    outbound   = google_service_account.identity["outbound"].member
  }

  project   = var.project_id
  secret_id = google_secret_manager_secret.secret["caller_key"].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value
}

# Every service names users by a keyed hash of their address (conversation ids,
# log masks; shared/domain/pseudonyms.py), so each reads the hash key.
resource "google_secret_manager_secret_iam_member" "address_hash_key_accessor" {
  for_each = {
    webhook    = google_service_account.identity["webhook"].member
    processor  = google_service_account.identity["processor"].member
    sender     = google_service_account.identity["sender"].member
    reconciler = google_service_account.identity["reconciler"].member
    # Conversation ids and the outbound message ids are keyed with it.
    outbound = google_service_account.identity["outbound"].member
    # Conversation ids of the replies it records; masks in the replay report.
    inbox = google_service_account.identity["inbox"].member
  }

  project   = var.project_id
  secret_id = google_secret_manager_secret.secret["address_hash_key"].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value
}
