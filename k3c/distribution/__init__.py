"""OCI distribution (registry) client: pull, push, credentials."""
