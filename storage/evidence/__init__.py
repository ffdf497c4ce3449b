"""Evidence: export jobs, signed manifests, and the site's Ed25519 signing key."""
