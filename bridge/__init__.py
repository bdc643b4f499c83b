"""bridge: verified payment webhooks in, canonical commerce events out through a durable outbox."""

__version__ = "0.1.0"
