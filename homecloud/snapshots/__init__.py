"""Snapshots of instances, retention policies, and their replication to other hosts."""
