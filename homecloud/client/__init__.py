"""Talking to a homecloud agent: its HTTP+JSON API over the local UNIX socket (``api``,
``wire``), or over HTTPS through a host's front door with its certificate pinned (``tls``).
Used by `hc`, by homecloud's own services that ask the agent (hc-wake, the console proxy) and
by a host sending snapshots to a peer."""
