"""HTTP API v1: thin routes over the services, one problem handler for every error."""
