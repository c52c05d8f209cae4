"""Python code generated from the Kubernetes wire-format .proto files in this directory."""
