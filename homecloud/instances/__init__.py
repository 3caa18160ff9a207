"""Instances: the step graph and service sets that compose them, the manager that creates,
starts, stops and removes them, and the drivers that know each kind (drivers/)."""
