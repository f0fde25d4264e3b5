"""The PostgreSQL layer: pool and migrations, the config store, the audit log, health snapshots.

Only activities (and the operator client, for reading history and audit) use it;
workflows never do. ``python -m activities.database.migrations`` applies the schema.
"""
