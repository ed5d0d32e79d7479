# One identity per service (webhook, processor, sender, reconciler, outbound, inbox),
# plus the three identities Google uses to call our private services. Each
# gets only the roles it needs, on the narrowest resource that accepts the
# binding. The build accounts (deployer, ci, profiles) come from the bootstrap
# root (terraform/bootstrap): they must exist before this root is applied.

locals {
  identities = {
    webhook = {
      display_name = "WhatsApp webhook (runtime of webhook_fn)"
      description  = "Validates Twilio signatures and publishes inbound messages."
    }
    processor = {
      display_name = "WhatsApp processor (runtime of processor_fn)"
      description  = "Keeps conversations in Firestore, asks OpenAI, enqueues replies."
    }
    sender = {
      display_name = "WhatsApp sender (runtime of sender_fn)"
      description  = "Sends replies through Twilio and records their outcome."
    }
    pubsub_push = {
      display_name = "Pub/Sub push identity (calls processor_fn)"
      description  = "Identity in the OIDC token of both push subscriptions; may only invoke the processor."
    }
    tasks_invoker = {
      display_name = "Cloud Tasks identity (calls sender_fn)"
      description  = "Identity in the OIDC token of reply tasks; may only invoke the sender."
    }
    reconciler = {
      display_name = "WhatsApp reconciler (runtime of processor_fn reconcile)"
      description  = "Finishes messages stuck past their deadline: re-enqueues replies or records failures."
    }
    scheduler = {
      display_name = "Cloud Scheduler identity (calls the reconciler)"
      description  = "Identity in the OIDC token of the reconcile job; may only invoke the reconciler."
    }
    outbound = {
      display_name = "WhatsApp outbound API (runtime of webhook_fn outbound)"
      description  = "Records business-initiated messages in Firestore and enqueues their send tasks."
    }
    inbox = {
      display_name = "WhatsApp inbox (runtime of inbox_fn)"
      description  = "Shows staff their businesses' conversations, records a person's replies and enqueues them; replays dead letters for operators."
    }
  }
}

# Account ids are the keys in kebab case: wa-webhook, wa-pubsub-push, ...
resource "google_service_account" "identity" {
  for_each = local.identities

  project      = var.project_id
  account_id   = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  display_name = each.value.display_name
  description  = each.value.description

  depends_on = [google_project_service.enabled]
}

# Firestore roles are granted on the project; the IAM condition (Google's
# documented database-level form) keeps them to the assistant's database.
resource "google_project_iam_member" "firestore_user" {
  for_each = {
    processor  = google_service_account.identity["processor"].member
    sender     = google_service_account.identity["sender"].member
    reconciler = google_service_account.identity["reconciler"].member
    outbound   = google_service_account.identity["outbound"].member
    inbox      = google_service_account.identity["inbox"].member
    profiles   = data.google_service_account.profiles.member
  }

  project = var.project_id
  role    = "roles/datastore.user"
  member  = each.value

  condition {
    title       = "assistant-database-only"
    description = "Only the assistant's Firestore database."
    expression  = "resource.name == \"projects/${var.project_id}/databases/${google_firestore_database.main.name}\""
  }
}

# The processor and the reconciler name the tasks invoker in each task's OIDC
# token, which requires actAs on that service account (and nothing else).
resource "google_service_account_iam_member" "acts_as_tasks_invoker" {
  for_each = {
    processor  = google_service_account.identity["processor"].member
    reconciler = google_service_account.identity["reconciler"].member
    # The sender that finishes a reply creates the next reply's task (hand-off).
    sender = google_service_account.identity["sender"].member
    # The outbound API creates the first task of a business-initiated message.
    outbound = google_service_account.identity["outbound"].member
    # The inbox creates the first task of a person's reply.
    inbox = google_service_account.identity["inbox"].member
  }

  service_account_id = google_service_account.identity["tasks_invoker"].name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

# Renamed when the reconciler was added: without this, Terraform would remove
# the processor's binding and add an identical one, and a destroy that runs
# after the create removes the binding both addresses describe.
moved {
  from = google_service_account_iam_member.processor_acts_as_tasks_invoker
  to   = google_service_account_iam_member.acts_as_tasks_invoker["processor"]
}

# Only for projects whose Pub/Sub service agent predates 8 April 2021: newer
# agents already hold roles/pubsub.serviceAgent, which can mint the push token.
resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  count = var.grant_legacy_pubsub_token_creator ? 1 : 0

  service_account_id = google_service_account.identity["pubsub_push"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# The profiles build (cloudbuild-profiles.yaml) runs as the bootstrap root's
# profiles account, which has its log and source-bucket grants there; here it
# gets Firestore (above) and pulls the deployed image, nothing else. Read at
# plan time: a plan before the bootstrap apply stops here, naming the account.
data "google_service_account" "profiles" {
  project    = var.project_id
  account_id = "${var.name_prefix}-profiles"
}

resource "google_artifact_registry_repository_iam_member" "profiles_image_reader" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = data.google_service_account.profiles.member
}
