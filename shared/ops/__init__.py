"""Operator commands (make failures, make replay), against the emulators or the cloud."""
