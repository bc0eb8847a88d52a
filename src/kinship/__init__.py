"""kinship-search: cross-age kinship face search (see README.md)."""


def software_version() -> str:
    """The installed kinship-search version (shown by `--version`, in reports and artifacts)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kinship-search")
    except PackageNotFoundError:
        return "unknown"
