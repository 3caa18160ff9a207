"""hc-wake: wakes sleeping (``--idle``) instances on their first connection and puts them to
sleep again when idle. A socket-activated unit of its own (units/hc-wake.socket), a client of
the agent's API like `hc`: killing the agent stops none of it.
"""
