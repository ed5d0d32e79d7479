# The bootstrap root: what must exist before the main root (terraform/) can be
# planned by anyone but a project owner. Applied once per project by a person
# with Owner (or the roles to create buckets, service accounts and project IAM
# grants), with Application Default Credentials; docs/deploy.md, step 3.
#
# Its state is local (terraform.tfstate beside this file, ignored by git): the
# state bucket it creates cannot hold the state of its own creation. After each
# apply, docs/deploy.md copies the file into that bucket under bootstrap/, and
# copies it back before the next one (docs/decisions/0018-bootstrap-root.md).
terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
    # google_project_service_identity (the Pub/Sub service agent) exists in
    # the beta provider only.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 7.0"
    }
  }
}
