# Production environment. project_id, region and image_tag come from the
# command line (Cloud Build substitutions); nothing here is secret.
environment         = "prod"
deletion_protection = true

# Replace with the production Twilio account and WhatsApp sender.
twilio_account_sid   = "AC00000000000000000000000000000000"
twilio_whatsapp_from = "whatsapp:+14155238886"

# One warm webhook instance keeps cold starts out of Twilio's 15 s timeout.
min_instances = {
  webhook    = 1
  processor  = 0
  sender     = 0
  reconciler = 0
}

# 20 messages/s is a quarter of Twilio's default 80 MPS per WhatsApp sender.
tasks_max_dispatches_per_second = 20
tasks_max_concurrent_dispatches = 20

# The persona. Empty (or absent) means the built-in default of shared/config.py.
# system_prompt  = <<-EOT
#   You are the WhatsApp assistant of Example Bakery. Answer briefly and
#   kindly, in the language the customer writes in.
# EOT
# fallback_reply = "Sorry, I can't answer right now. Please try again in a few minutes."

# Add channel ids, e.g. "projects/PROJECT/notificationChannels/123".
notification_channels = []
