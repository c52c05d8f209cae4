"""Image builds behind a small engine interface (buildah today, buildkit when present)."""
