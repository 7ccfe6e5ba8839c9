"""Database: SQLAlchemy 2.x typed ORM models (``models``), engines and sessions (``session``),
and every query the service runs (``repo``). Alembic (``migrations/``) owns the schema."""
