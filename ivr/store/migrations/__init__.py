"""Alembic migrations of the store (package data: shipped with the wheel, run by ``ivr db upgrade``).

New revision: ``ivr db revision -m "what changed" --autogenerate`` against a database at head,
then read and edit the generated file: it is a frozen snapshot, never import ``ivr.store.models``
from a migration.
"""
