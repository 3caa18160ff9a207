"""Installing and checking the host: the bootstrap, the agent's set-up and `hc doctor`'s checks.

Empty on purpose: the bootstrap runs from here on Debian's python before anything is installed.
"""
