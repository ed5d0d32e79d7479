provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = merge(
    {
      app         = "whatsapp-assistant"
      environment = var.environment
      managed-by  = "terraform"
    },
    var.labels,
  )
}

# Only the project number is read (service URLs, the Pub/Sub service agent).
# No depends_on: a data source that depends on a resource with pending
# changes is read during apply, so adding an API would make every service
# URL unknown at plan time and replace the IAM members and services built on
# them. Reading the project needs only the Resource Manager API, which the
# docs/deploy.md enables before the first apply.
data "google_project" "this" {
  project_id = var.project_id
}
