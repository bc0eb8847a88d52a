"""The verbal scale lives in `kinship.domain.verbal`; this name stays for kinship.cli.client_commands
until it imports that module (its owner is rewriting it; see the import contract's exceptions)."""

from kinship.domain.verbal import verbal_scale

__all__ = ["verbal_scale"]
