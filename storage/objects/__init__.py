"""Object stores: the ``ObjectStore`` interface, the local directory and S3/MinIO, and choosing one from settings."""
