output "state_bucket" {
  description = "Bucket of the Terraform state: terraform init -backend-config=bucket=... in terraform/, _TF_STATE_BUCKET of the deploy build, and the home of this root's state copy (bootstrap/terraform.tfstate)."
  value       = google_storage_bucket.state.name
}

output "source_bucket" {
  description = "Bucket every gcloud builds submit stages its source in: --gcs-source-staging-dir=gs://BUCKET/source."
  value       = google_storage_bucket.source.name
}

output "build_service_accounts" {
  description = "Emails of the build accounts: deployer (cloudbuild.yaml), ci (cloudbuild-test.yaml), profiles (cloudbuild-profiles.yaml)."
  value       = { for key, account in google_service_account.build : key => account.email }
}

output "pubsub_service_agent" {
  description = "Email of the Pub/Sub service agent, which the main root grants dead-letter roles to."
  value       = google_project_service_identity.pubsub.email
}

output "shell_exports" {
  description = "The variables docs/deploy.md uses from here on: eval \"$(terraform -chdir=terraform/bootstrap output -raw shell_exports)\"."
  value = join(" ", [
    "export",
    "BUCKET=${google_storage_bucket.state.name}",
    "SOURCES=${google_storage_bucket.source.name}",
    "DEPLOYER=${google_service_account.build["deployer"].email}",
    "CI_ACCOUNT=${google_service_account.build["ci"].email}",
    "PROFILES_ACCOUNT=${google_service_account.build["profiles"].email}",
  ])
}
