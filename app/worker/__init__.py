"""The Celery worker: ``celery_app`` (configured from the settings), thin tasks, and the
inference service they call. Only this package (in the worker process) imports torch."""
