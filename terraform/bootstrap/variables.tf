variable "project_id" {
  type        = string
  description = "Google Cloud project of one environment (the same project_id the main root is applied with)."
}

variable "region" {
  type        = string
  description = "Region of the state and source buckets; use the region the services run in (the main root's region)."
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must look like us-central1 or europe-west1."
  }
}

variable "name_prefix" {
  type        = string
  description = "Prefix of the build service-account ids (wa-deployer, wa-ci, wa-profiles); must equal the main root's name_prefix, which looks the profiles account up by it."
  default     = "wa"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,11}$", var.name_prefix))
    error_message = "name_prefix must be 2-12 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "state_bucket" {
  type        = string
  description = "Name of the bucket that keeps the Terraform state (bucket names are global); empty means PROJECT_ID-tfstate."
  default     = ""
}

variable "source_bucket" {
  type        = string
  description = "Name of the bucket gcloud builds submit stages the source in (--gcs-source-staging-dir); empty means PROJECT_ID-build-source."
  default     = ""
}

variable "source_retention_days" {
  type        = number
  description = "Days an uploaded build source is kept in the source bucket before it is deleted."
  default     = 7

  validation {
    condition     = var.source_retention_days >= 1 && var.source_retention_days <= 365
    error_message = "source_retention_days must be between 1 and 365."
  }
}

variable "state_noncurrent_days" {
  type        = number
  description = "Days an overwritten state version is kept in the state bucket (object versioning) before it is deleted."
  default     = 90

  validation {
    condition     = var.state_noncurrent_days >= 7 && var.state_noncurrent_days <= 3650
    error_message = "state_noncurrent_days must be between 7 and 3650."
  }
}

variable "labels" {
  type        = map(string)
  description = "Extra labels on the buckets."
  default     = {}
}
