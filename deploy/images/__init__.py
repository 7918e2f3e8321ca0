"""Container images for the attestor and the agent (see README.md here)."""
