"""The HTTP API: one router per resource (registry, archive, media, holds, exports, health, metrics)."""
