"""Ingest: receive uploads (with limits, safe ZIP extraction), decode and validate every file
before anything is stored, then store originals and write Study/Series/Instance rows."""
