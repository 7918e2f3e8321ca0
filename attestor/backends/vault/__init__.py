"""Vault backends: one authenticated connection, the PKI issuer and the KV v2 store."""
