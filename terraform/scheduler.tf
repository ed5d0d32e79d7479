# The reconciler runs once a minute. Cloud Scheduler POSTs to its run.app URL
# with an OIDC token of the scheduler identity, whose only right is to invoke
# the reconciler (run.tf); the reconciler checks that token's audience and
# email and the job's caller key in code (AUTH_AUDIENCE,
# AUTH_ALLOWED_SERVICE_ACCOUNTS, CALLER_PROOF in locals.tf).
# Cloud Scheduler in the same project counts as internal traffic for Cloud
# Run when it calls the run.app URL, so the reconciler keeps internal ingress.
#
# Cloud Scheduler's service agent mints the token; it holds
# roles/cloudscheduler.serviceAgent from the moment the API is enabled, so no
# Token Creator grant is needed here.
resource "google_cloud_scheduler_job" "reconcile" {
  project     = var.project_id
  region      = var.region
  name        = "${var.name_prefix}-reconcile"
  description = "Every minute: finish WhatsApp messages stuck past their deadline (liveness ${var.liveness_seconds} s)."
  schedule    = "* * * * *"
  time_zone   = "Etc/UTC"

  # A run may take as long as the reconciler's request timeout, no longer.
  attempt_deadline = "${local.reconcile_run_seconds}s"

  # No retries: the next run, a minute later, is the retry, and a retried
  # run would overlap it.
  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = local.reconciler_audience

    # Cloud Run forwards the OIDC token without its signature; the caller key
    # is what the reconciler can check (docs/decisions/0003-caller-verification.md).
    headers = {
      "X-Caller-Key" = random_password.caller_key.result
    }

    oidc_token {
      service_account_email = google_service_account.identity["scheduler"].email
      audience              = local.reconciler_audience
    }
  }

  lifecycle {
    # The reconciler must get at least one run (a minute) after a reply
    # stalls before the liveness bound closes the message.
    precondition {
      condition     = var.reconcile_after_seconds + 60 < var.liveness_seconds
      error_message = "reconcile_after_seconds plus one scheduler interval (60 s) must stay below liveness_seconds, or the reconciler cannot resend a stalled reply in time."
    }
  }

  depends_on = [
    google_project_service.enabled,
    google_cloud_run_v2_service_iam_member.private_invoker,
  ]
}
