"""hc: the command-line client of the agent's API."""
