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

data "google_project" "this" {
  project_id = var.project_id

  depends_on = [google_project_service.enabled]
}
