"""Placeholder: the samba fixture is being written."""
