"""hc-wake's kept instance list: a burst of connections costs one agent call; a miss asks
again; an old list is not trusted."""

import asyncio
import threading
from ipaddress import IPv4Address

from homecloud.wake.listing import InstanceListing
from homecloud.wake.targets import Target

BLOG = {"name": "blog", "idle": 600, "ipv4": "10.9.8.2", "ipv6": None, "ports": ["8080:80/tcp"]}
WIKI = {"name": "wiki", "idle": 600, "ipv4": "10.9.8.3", "ipv6": None, "ports": []}


class Agent:
    """Answers GET /v1/instances with ``listings`` in turn, slowly enough for callers to
    overlap."""

    def __init__(self, *listings: list[dict]) -> None:
        self.listings = list(listings)
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> list[dict]:
        with self.lock:
            self.calls += 1
            answer = self.listings[min(self.calls, len(self.listings)) - 1]
        threading.Event().wait(0.05)
        return answer


def test_a_burst_of_first_connections_costs_one_call():
    agent = Agent([BLOG])
    listing = InstanceListing(agent)

    async def burst():
        return await asyncio.gather(*(listing.find(IPv4Address("10.9.8.2"), 80)
                                      for _ in range(50)))

    targets = asyncio.run(burst())
    assert set(targets) == {Target("blog", IPv4Address("10.9.8.2"), 80)}
    assert agent.calls == 1
    # Later connections come from the kept list too.
    again = asyncio.run(listing.find(IPv4Address("192.0.2.1"), 8080))
    assert again == Target("blog", IPv4Address("10.9.8.2"), 80)
    assert agent.calls == 1


def test_a_miss_asks_the_agent_again():
    agent = Agent([BLOG], [BLOG, WIKI])
    listing = InstanceListing(agent)
    asyncio.run(listing.find(IPv4Address("10.9.8.2"), 80))
    found = asyncio.run(listing.find(IPv4Address("10.9.8.3"), 22))
    assert found == Target("wiki", IPv4Address("10.9.8.3"), 22)
    assert agent.calls == 2
    # Still unknown after a fresh answer: one call per miss, and None.
    assert asyncio.run(listing.find(IPv4Address("10.9.8.9"), 22)) is None
    assert agent.calls == 3


def test_an_old_list_is_not_trusted_for_a_hit():
    moved = dict(BLOG, ipv4="10.9.8.7")
    agent = Agent([BLOG], [moved])
    now = [0.0]
    listing = InstanceListing(agent, max_age=5, clock=lambda: now[0])
    asyncio.run(listing.find(IPv4Address("192.0.2.1"), 8080))
    now[0] = 6.0  # the idle check did not refresh it meanwhile
    found = asyncio.run(listing.find(IPv4Address("192.0.2.1"), 8080))
    assert found == Target("blog", IPv4Address("10.9.8.7"), 80)
    assert agent.calls == 2


def test_the_idle_checks_answer_is_kept():
    agent = Agent([])
    listing = InstanceListing(agent)
    listing.remember([WIKI])
    assert asyncio.run(listing.find(IPv4Address("10.9.8.3"), 80)) == Target(
        "wiki", IPv4Address("10.9.8.3"), 80)
    assert agent.calls == 0
