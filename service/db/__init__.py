"""The audit database: tables, engines, migrations and their administration."""
