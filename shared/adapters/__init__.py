"""Adapters: one module per outside system (Firestore, Pub/Sub, Cloud Tasks, Twilio, OpenAI, Secret Manager, Google identity)."""
