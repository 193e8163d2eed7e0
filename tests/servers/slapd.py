"""Placeholder: the slapd fixture is being written."""
