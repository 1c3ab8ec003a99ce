"""Alembic migrations of the audit database, applied by `plant-icd db upgrade`."""
