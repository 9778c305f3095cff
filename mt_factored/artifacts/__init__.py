"""Low-level artifact IO shared by every package that writes or reads files."""
