"""Handlers: one pipeline step each (webhook, processor, sender, reconciler), on explicit dependencies."""
