"""The demo site's tests (run from the repository, not installed)."""
