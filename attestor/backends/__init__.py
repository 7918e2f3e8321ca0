"""Pluggable backends: one narrow Protocol per kind, implementations side by side."""
