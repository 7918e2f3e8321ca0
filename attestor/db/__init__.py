"""Storage: tables, engine, migrations and the one data-access module (queries)."""
