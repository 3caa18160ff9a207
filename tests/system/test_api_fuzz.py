"""Schema-driven fuzzing of the real agent from its own /openapi.json (schemathesis).

Every operation gets a fixed number of generated requests on the agent's UNIX socket, in a dev
host of this module's own with no images, and fails on any 500 or on an answer that does not
match the description. Whatever could create or destroy something is confined to names and
paths made for the fuzzing: names match `fuzz-…`, import paths lie under a directory that does
not exist, and the only recipe is one that does not exist.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from homecloud.devhost import DevHost

schemathesis = pytest.importorskip(
    "schemathesis", reason="the API fuzz test needs schemathesis (pip install -e '.[test]')")
import jsonschema_rs  # noqa: E402  (installed with schemathesis)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402
from unixhttp import agent_socket, unix_session  # noqa: E402

pytestmark = pytest.mark.system
EXAMPLES = 15  # per operation: about 250 requests in all, well under a minute here
FUZZ_NAME = {"type": "string", "pattern": "^fuzz-[a-z0-9]{1,8}$"}
CONFINED = {
    "name": FUZZ_NAME, "image": FUZZ_NAME,
    "path": {"type": "string", "pattern": "^/nonexistent-fuzz/[a-z0-9]{0,8}$"},
    "recipe": {"enum": ["fuzz-no-such-recipe"]},
}


def confined(document: dict[str, Any]) -> dict[str, Any]:
    """The agent's description with every name, path and recipe narrowed to harmless ones."""
    document = copy.deepcopy(document)
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation["parameters"]:
                if parameter["name"] in CONFINED:
                    parameter["schema"] = CONFINED[parameter["name"]]
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                properties = body["schema"]["properties"]
                for key in properties.keys() & CONFINED.keys():
                    properties[key] = CONFINED[key]
    return document


@pytest.fixture(scope="module")
def fuzz_target(private_devhost: DevHost) -> Iterator[tuple[Any, Any, DevHost]]:
    session = unix_session(agent_socket(private_devhost))
    reply = session.get("http://hcd/openapi.json", timeout=60)
    assert reply.status_code == 200
    document = reply.json()
    assert private_devhost.hc("image", "ls", json=True) == []  # nothing to harm
    yield schemathesis.openapi.from_dict(confined(document)), session, private_devhost
    session.close()


def _operation_ids() -> list[str]:
    # The route table is known without an agent: one test per operation, named for it.
    from homecloud.agent.api import build_router

    return [f"{r.method} {r.pattern}" for r in build_router(None).routes]  # type: ignore[arg-type]


def _line_schema(document: dict[str, Any], path: str, method: str) -> dict[str, Any] | None:
    """The schema of one line of the operation's stream, its references resolved."""
    content = document["paths"][path][method.lower()]["responses"]["200"]["content"]
    if "application/x-ndjson" not in content:
        return None
    text = json.dumps(content["application/x-ndjson"]["schema"])
    error = json.dumps(document["components"]["schemas"]["Error"])
    return json.loads(text.replace('{"$ref": "#/components/schemas/Error"}', error))


def _stream_lines(response: Any) -> list[Any]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


@pytest.mark.parametrize("operation_id", _operation_ids())
def test_generated_requests_get_no_500_and_described_answers(
        fuzz_target: tuple[Any, Any, DevHost], operation_id: str) -> None:
    schema, session, host = fuzz_target
    method, path = operation_id.split(" ", 1)
    operation = schema[path][method]
    line_schema = _line_schema(schema.raw_schema, path, method)
    pid_before = host.run("systemctl", "show", "-p", "MainPID", "--value", "hcd.service").stdout

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def fuzz(case: Any) -> None:
        response = case.call(session=session, base_url="http://hcd", timeout=60)
        if response.headers.get("Content-Type") == "application/x-ndjson":
            # A stream (schemathesis reads JSON only): each line must fit the line schema,
            # and the last is the result or the error.
            assert response.status_code == 200
            lines = _stream_lines(response)
            for line in lines:
                jsonschema_rs.validate(line_schema, line)
            assert lines and lines[-1].keys() & {"result", "error"}, lines
            return
        case.validate_response(response, checks=[not_a_server_error,
                                                 response_schema_conformance])

    fuzz()
    # The same agent answered everything, and nothing was made.
    assert host.run("systemctl", "show", "-p", "MainPID", "--value",
                    "hcd.service").stdout == pid_before
    assert host.hc("image", "ls", json=True) == []
    assert [i["name"] for i in host.hc("ls", json=True)] == []
