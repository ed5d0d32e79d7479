provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = merge({ app = "whatsapp-assistant", managed-by = "terraform-bootstrap" }, var.labels)
}

provider "google-beta" {
  project = var.project_id
  region  = var.region

  default_labels = merge({ app = "whatsapp-assistant", managed-by = "terraform-bootstrap" }, var.labels)
}
