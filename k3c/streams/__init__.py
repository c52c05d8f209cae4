"""Streams of LocalContainers: logs, exec and attach, served by the API server and used by the CLI."""
