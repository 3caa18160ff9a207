"""hcd: the homecloud agent (API server, reconcile pass, state store)."""
