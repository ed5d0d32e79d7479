# One Docker repository for the one image all three services run.
resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption is adequate for an image that holds no secrets; a customer-managed key adds a KMS key lifecycle this project does not need.
  project       = var.project_id
  location      = var.region
  repository_id = var.artifact_repository
  description   = "Container images of the WhatsApp assistant (webhook, processor, sender)."
  format        = "DOCKER"

  # Tags are commit SHAs: an immutable tag means a rollback redeploys exactly
  # the bytes that ran before.
  docker_config {
    immutable_tags = true
  }

  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "keep-recent-releases"
    action = "KEEP"
    most_recent_versions {
      keep_count = 30
    }
  }

  cleanup_policies {
    id     = "delete-old-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "1209600s"
    }
  }

  depends_on = [google_project_service.enabled]
}
