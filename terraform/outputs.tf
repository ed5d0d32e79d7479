output "twilio_webhook_url" {
  description = "The webhook URL without connection overrides: the URL webhook_fn checks signatures against (PUBLIC_WEBHOOK_URL)."
  value       = local.webhook_public_url
}

output "twilio_webhook_url_with_retries" {
  description = "Paste into Twilio (WhatsApp sender > 'A message comes in', and as status callback URL): the webhook URL with connection overrides, so Twilio retries a 503 or a timeout instead of dropping the message (docs/decisions, webhook retries)."
  value       = "${local.webhook_public_url}#rc=3&rp=ct,rt,4xx,5xx&rt=5000"
}

output "service_urls" {
  description = "URLs of the Cloud Run services by key (webhook, processor, sender, reconciler, outbound, inbox), in the deterministic run.app form; the services also answer on their legacy hash URL."
  value       = local.run_urls
}

output "inbox_url" {
  description = "Where staff open the inbox (INBOX_URL): give it to each business's staff."
  value       = local.inbox_public_url
}

output "inbox_sign_in_redirect_uri" {
  description = "Add to the inbox's OAuth client as an authorized redirect URI, and its origin (inbox_url) as an authorized JavaScript origin (docs/deploy.md)."
  value       = "${local.inbox_public_url}/auth/google"
}

output "image" {
  description = "Image reference the services run."
  value       = local.image
}

output "artifact_repository_url" {
  description = "Docker repository that Cloud Build pushes to."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "pubsub" {
  description = "Topic and subscription names."
  value = {
    inbound_topic            = google_pubsub_topic.inbound.name
    processor_subscription   = google_pubsub_subscription.processor.name
    dead_letter_topic        = google_pubsub_topic.dead_letter.name
    dead_letter_subscription = google_pubsub_subscription.dead_letter_push.name
    dead_letter_hold         = google_pubsub_subscription.dead_letter_hold.name
  }
}

output "tasks_queue" {
  description = "Cloud Tasks queue id of outbound replies."
  value       = google_cloud_tasks_queue.outbound.id
}

output "service_accounts" {
  description = "Service account emails per role: the runtime of each service (webhook, processor, sender, reconciler, outbound, inbox), the identities Google calls them with (pubsub_push, tasks_invoker, scheduler), and the profiles build's account (profiles, created by terraform/bootstrap with deployer and ci)."
  value = merge(
    { for key, account in google_service_account.identity : key => account.email },
    { profiles = data.google_service_account.profiles.email },
  )
}

output "secrets" {
  description = "Secret ids to add versions to with gcloud (values never go through Terraform)."
  value       = { for key, secret in google_secret_manager_secret.secret : key => secret.secret_id }
}

output "reconcile_job" {
  description = "Cloud Scheduler job that runs the reconciler every minute (gcloud scheduler jobs run/pause/resume NAME --location=REGION)."
  value = {
    name     = google_cloud_scheduler_job.reconcile.name
    location = google_cloud_scheduler_job.reconcile.region
  }
}

output "firestore_collections" {
  description = "Firestore collections the services use; each has a TTL policy on expireAt."
  value       = local.collections
}

# Read back by release.tf on the next apply: keep the name and the type.
output "release_sequence" {
  description = "release_sequence of the last apply (the deploy build's creation time in milliseconds); an apply with a lower one fails."
  value       = var.release_sequence
}

output "release_image_tag" {
  description = "Image tag of the last apply."
  value       = var.image_tag
}

output "send_lanes" {
  description = "Cloud Tasks queue ids of the send lanes, one business number each (profiles-apply assigns them)."
  value       = var.send_lanes
}
