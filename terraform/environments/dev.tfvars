# Development environment. project_id, region and image_tag come from the
# command line (Cloud Build substitutions); nothing here is secret.
environment         = "dev"
deletion_protection = false

# Twilio's WhatsApp Sandbox sender; replace with the dev sender's values.
twilio_account_sid   = "AC00000000000000000000000000000000"
twilio_whatsapp_from = "whatsapp:+14155238886"

log_level = "DEBUG"

max_instances = {
  webhook    = 2
  processor  = 2
  sender     = 1
  reconciler = 1
}

tasks_max_dispatches_per_second = 5
tasks_max_concurrent_dispatches = 5

notification_channels = []
