# What docs/deploy.md used to list as gcloud commands: the APIs the first
# plan needs, the state and source buckets, the three build accounts with
# exactly their roles, the bucket grants, and the Pub/Sub service agent.

locals {
  state_bucket  = var.state_bucket != "" ? var.state_bucket : "${var.project_id}-tfstate"
  source_bucket = var.source_bucket != "" ? var.source_bucket : "${var.project_id}-build-source"

  # The accounts Cloud Build runs as, one per build config, so that the tests
  # and the profiles writer never hold deploy rights (decision 0010).
  build_accounts = {
    deployer = {
      display_name = "WhatsApp assistant deployer (cloudbuild.yaml)"
      description  = "Builds and pushes the image and applies terraform/; runs no repository code."
    }
    ci = {
      display_name = "WhatsApp assistant tests (cloudbuild-test.yaml)"
      description  = "Runs make test with third-party packages; can write logs and read the uploaded source, nothing else."
    }
    profiles = {
      display_name = "Business profiles applier (cloudbuild-profiles.yaml)"
      description  = "Runs the deployed image to evaluate and write the business profiles file and its knowledge; Firestore documents, the OpenAI key, logs and the uploaded source only."
    }
  }
}

# APIs that must be on before the main root can be planned; the main root
# enables the rest. disable_on_destroy = false: both roots may list an API,
# and turning one off would break everything else that uses it.
resource "google_project_service" "enabled" {
  for_each = toset([
    "cloudbuild.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com",
  ])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# ------------------------------------------------------------------ buckets

# Terraform state of every environment of this project, one prefix each.
# Versioned, so a broken apply or a bad import can be rolled back.
resource "google_storage_bucket" "state" {
  #checkov:skip=CKV_GCP_62:Access logs of the state bucket would go to another bucket that itself needs a home; Cloud Audit Logs already record who read or wrote the state.
  project                     = var.project_id
  name                        = local.state_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.state_noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

# Where `gcloud builds submit --gcs-source-staging-dir=gs://BUCKET/source`
# uploads the working tree. The default PROJECT_cloudbuild bucket cannot be
# read by a user-specified build account, so the builds read their source here.
resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Uploaded sources are deleted after source_retention_days; Cloud Audit Logs record access.
  #checkov:skip=CKV_GCP_78:Each upload is a new object named by its hash; there is nothing to version, and old sources are deleted on purpose.
  project                     = var.project_id
  name                        = local.source_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  lifecycle_rule {
    condition {
      age = var.source_retention_days
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

# ----------------------------------------------------------- build accounts

resource "google_service_account" "build" {
  for_each = local.build_accounts

  project      = var.project_id
  account_id   = "${var.name_prefix}-${each.key}"
  display_name = each.value.display_name
  description  = each.value.description

  depends_on = [google_project_service.enabled]
}

# The deployer applies terraform/: one role per kind of resource it creates,
# and the three its build steps need. tests/infra/test_bootstrap.py maps every
# resource type of terraform/ to the permissions that create it and fails when
# a role is missing here, or when a role here is needed by nothing.
resource "google_project_iam_member" "deployer" {
  #checkov:skip=CKV_GCP_41:The deployer creates the runtime accounts and deploys services that run as them, so it acts as them; it also holds projectIamAdmin, so a narrower actAs grant would not limit it, and per-account grants made in the same apply race IAM propagation on the first deploy.
  #checkov:skip=CKV_GCP_49:Same reason: creating and acting as the runtime accounts is the deployer's job; it runs no repository code (decision 0010).
  for_each = {
    "roles/artifactregistry.admin"          = "the image repository, its cleanup policies and reader grant; pushes the image"
    "roles/run.admin"                       = "the Cloud Run services and their invoker bindings"
    "roles/iam.serviceAccountAdmin"         = "the runtime service accounts and the grants on them"
    "roles/iam.serviceAccountUser"          = "acts as the runtime accounts: Cloud Run services, push subscription and scheduler job tokens"
    "roles/pubsub.admin"                    = "topics, subscriptions and their IAM"
    "roles/cloudtasks.admin"                = "the send queue and its enqueuer grants"
    "roles/cloudscheduler.admin"            = "the reconcile job"
    "roles/secretmanager.admin"             = "the secrets, their accessor grants, and the one value Terraform generates (caller-key)"
    "roles/datastore.owner"                 = "the Firestore database and its TTL fields"
    "roles/monitoring.alertPolicyEditor"    = "the alert policies"
    "roles/monitoring.dashboardEditor"      = "the operations dashboard"
    "roles/logging.configWriter"            = "the log-based metrics and the analytics sink"
    "roles/bigquery.dataOwner"              = "the analytics dataset, its partition expiry and the sink writer's grant on it"
    "roles/logging.logWriter"               = "its own build log"
    "roles/serviceusage.serviceUsageAdmin"  = "enables the APIs of terraform/apis.tf"
    "roles/resourcemanager.projectIamAdmin" = "the project-level grants (Firestore, limited to the assistant's database)"
    "roles/cloudbuild.builds.viewer"        = "the gate step: finds the tests build of its commit and its own creation time"
  }

  project = var.project_id
  role    = each.key
  member  = google_service_account.build["deployer"].member
}

# The tests and the profiles build write their build log and nothing else in
# the project; the profiles account's Firestore and image grants are on the
# database and the repository, in the main root (terraform/identities.tf).
resource "google_project_iam_member" "build_log_writer" {
  for_each = toset(["ci", "profiles"])

  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build[each.key].member
}

resource "google_storage_bucket_iam_member" "state_admin" {
  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.build["deployer"].member
}

# Every build reads the source it was submitted with; only people write it.
resource "google_storage_bucket_iam_member" "source_reader" {
  for_each = toset(["deployer", "ci", "profiles"])

  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build[each.key].member
}

# ----------------------------------------------------------- service agents

# Pub/Sub's service agent (service-NUMBER@gcp-sa-pubsub) forwards dead
# letters: the main root grants it publisher on the dead-letter topic and
# subscriber on the inbound subscription. Google creates service agents
# lazily, so on a new project it may not exist when those grants are made,
# and the grant fails. Generating the identity here makes it exist first. No
# other service agent is granted a role by this project, so none other is
# created ahead.
resource "google_project_service_identity" "pubsub" {
  provider = google-beta

  project = var.project_id
  service = "pubsub.googleapis.com"

  depends_on = [google_project_service.enabled]
}
