# Pinned so every machine plans with the same provider schema. Commit the
# .terraform.lock.hcl that the first `terraform init` writes: it pins the exact
# provider build and its checksums.
terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
    # Generates the caller key (secrets.tf).
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # Partial configuration: the bucket and prefix are given at init time
  # (terraform init -backend-config=bucket=... -backend-config=prefix=...), so
  # each environment keeps its own state without editing this file.
  backend "gcs" {}
}
