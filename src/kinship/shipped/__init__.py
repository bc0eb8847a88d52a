"""The kinship artifact shipped with kinship-search: served when no artifact is made active (see README.md here)."""
