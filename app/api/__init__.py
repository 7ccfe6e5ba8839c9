"""The HTTP API (FastAPI): one router per resource under ``routes/``, gathered in ``main``."""
