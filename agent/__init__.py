

def version() -> str:
    """The installed package's version (what heartbeats and --version report)."""
    from importlib import metadata

    try:
        return metadata.version("writeback-agent")
    except metadata.PackageNotFoundError:  # running from a checkout without install
        return "0+unknown"
