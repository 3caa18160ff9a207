"""The state store: what the user asked for, in SQLite; each package brings its own tables."""
