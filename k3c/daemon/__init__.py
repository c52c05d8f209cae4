"""The k3c daemon's runtime side: its private containerd (config + supervisor) and the sandbox image."""
