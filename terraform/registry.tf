# One Docker repository for the one image every service runs.
resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption is adequate for an image that holds no secrets; a customer-managed key adds a KMS key lifecycle this project does not need.
  project       = var.project_id
  location      = var.region
  repository_id = var.artifact_repository
  description   = "Container images of the WhatsApp assistant (one image for the webhook, processor, sender, reconciler, outbound and inbox services)."
  format        = "DOCKER"

  # Tags are commit SHAs, and mutable. Under immutable tags Artifact Registry
  # deletes no tagged version ("prevents all tags from being modified, moved
  # or deleted"), so the cleanup below could never remove a release and the
  # repository would grow forever. A tag is still never moved: the deploy
  # build reuses the image already pushed for its commit instead of pushing
  # again, and a Cloud Run revision runs the digest it resolved when it was
  # created (docs/decisions/0019-mutable-image-tags.md).
  docker_config {
    immutable_tags = false
  }

  # Cleanup: every version is tagged with its commit, so tagged versions
  # must be deleted too or the repository grows forever. A version matching
  # both a KEEP and a DELETE policy is kept (Artifact Registry's rule), so:
  # keep the newest image_keep_count versions and the deployed tag (a
  # rollback may deploy one older than those), delete everything else once it
  # is a week old (a build's image is never deleted between push and deploy).
  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "keep-recent-releases"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.image_keep_count
    }
  }

  dynamic "cleanup_policies" {
    for_each = var.image_tag == "" ? [] : [var.image_tag]
    content {
      id     = "keep-deployed-release"
      action = "KEEP"
      condition {
        tag_state    = "TAGGED"
        tag_prefixes = [cleanup_policies.value]
      }
    }
  }

  cleanup_policies {
    id     = "delete-old-releases"
    action = "DELETE"
    condition {
      tag_state  = "TAGGED"
      older_than = "604800s"
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
