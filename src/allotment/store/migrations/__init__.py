"""Versioned schema migrations, one list per SQL dialect.

A migration is applied once, in order, inside a transaction, and recorded in
``schema_migrations``. Never edit a released migration: add a new one.
"""
