"""The self-service password reset portal (docs/portal.md): server-rendered pages
that drive writeback agents through cloud/sdk.py and the relay."""
