# Production environment. project_id, region and image_tag come from the
# command line (Cloud Build substitutions); nothing here is secret.
environment         = "prod"
deletion_protection = true

# Replace with the production Twilio account and WhatsApp sender.
twilio_account_sid   = "AC00000000000000000000000000000000"
twilio_whatsapp_from = "whatsapp:+14155238886"

# One warm webhook instance keeps cold starts out of Twilio's 15 s timeout.
min_instances = {
  webhook   = 1
  processor = 0
  sender    = 0
}

# 20 messages/s is a quarter of Twilio's default 80 MPS per WhatsApp sender.
tasks_max_dispatches_per_second = 20
tasks_max_concurrent_dispatches = 20

# Add channel ids, e.g. "projects/PROJECT/notificationChannels/123".
notification_channels = []
