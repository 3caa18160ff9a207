"""The HTTP API: routes mapping requests onto the agent's services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homecloud import __version__
from homecloud.agent.api_consoles import console_routes
from homecloud.agent.api_frontdoor import frontdoor_routes
from homecloud.agent.api_instances import instance_routes
from homecloud.agent.api_lambdas import lambda_routes
from homecloud.agent.api_machines import machine_routes
from homecloud.agent.api_network import network_routes
from homecloud.agent.api_snapshots import snapshot_routes
from homecloud.agent.app import Agent
from homecloud.agent.fields import body_field
from homecloud.agent.openapi import openapi_document
from homecloud.agent.operations import ProgressReport, stream_operation
from homecloud.agent.routes import Request, Response, Route, Router, StreamResponse
from homecloud.agent.schemas import IMAGE_NAME, array_of, dataclass_schema, object_schema
from homecloud.errors import UserError
from homecloud.images.catalog import ImageInfo

API_VERSION = 1


def build_router(agent: Agent) -> Router:
    router = Router()

    def version(_: Request) -> Response:
        return Response({"version": __version__, "api": API_VERSION})

    def pool(_: Request) -> Response:
        usage = agent.pool.usage()
        return Response({"driver": usage.driver, "path": str(usage.path), "size": usage.size,
                         "used": usage.used, "free": usage.free,
                         "fast_fork": agent.pool.fast_fork,
                         "capabilities": usage.capabilities.as_dict()})

    def list_images(_: Request) -> Response:
        return Response([vars(image) for image in agent.images.list()])

    def get_image(request: Request) -> Response:
        return Response(vars(agent.images.get(request.params["name"])))

    def build_image(request: Request) -> StreamResponse:
        from homecloud.images.recipes import build_image as build
        from homecloud.images.recipes import check_build, default_image_name

        recipe = body_field(request, "recipe", str)
        vm = body_field(request, "vm", bool, required=False, default=False)
        machine = body_field(request, "machine", bool, required=False, default=False)
        cloud_init = body_field(request, "cloud_init", bool, required=False, default=False)
        name = body_field(request, "name", str, required=False,
                          default=default_image_name(recipe, vm, machine))
        release = body_field(request, "release", str, required=False)
        mirror = body_field(request, "mirror", str, required=False) or agent.config.images.mirror
        check_build(recipe, release=release, mirror=mirror, vm=vm, cloud_init=cloud_init,
                    machine=machine)
        agent.images.check_new_name(name)

        def work(progress: ProgressReport) -> dict[str, Any]:
            with agent.busy_images.hold(name, f"building {recipe}"):
                agent.images.check_new_name(name)
                build(agent.pool, name, recipe, release=release, mirror=mirror, vm=vm,
                      cloud_init=cloud_init, machine=machine, progress=progress)
                source = (f"build:{recipe}" + ("+vm" if vm else "")
                          + ("+machine" if machine else "")
                          + (f"/{release}" if release else ""))
                return vars(agent.images.record(name, source))

        return StreamResponse(stream_operation(work, f"build {name}"))

    def import_image(request: Request) -> StreamResponse:
        from homecloud.images.importer import import_image as run_import

        name = body_field(request, "name", str)
        path = Path(body_field(request, "path", str))
        if not path.is_absolute():
            raise UserError(f"path {str(path)!r} must be absolute (the agent resolves it on "
                            "the host)")
        agent.images.check_new_name(name)

        def work(progress: ProgressReport) -> dict[str, Any]:
            with agent.busy_images.hold(name, "an import"):
                agent.images.check_new_name(name)
                run_import(agent.pool, name, path, progress)
                return vars(agent.images.record(name, f"import:{path}"))

        return StreamResponse(stream_operation(work, f"import {name}"))

    def remove_image(request: Request) -> Response:
        name = request.params["name"]
        with agent.busy_images.hold(name, "a removal"):
            agent.images.remove(name)
        return Response({"removed": name})

    def openapi(_: Request) -> Response:
        return Response(openapi_document(router, __version__))

    image = dataclass_schema(ImageInfo)
    for route in (
        Route("GET", "/v1/version", version, "Agent and API version",
              response=object_schema({"version": "string", "api": "integer"})),
        Route("GET", "/v1/pool", pool, "The storage pool: driver, path, size, used, free",
              response=object_schema({"driver": "string", "path": "string", "size": "integer",
                                      "used": "integer", "free": "integer",
                                      "fast_fork": "boolean", "capabilities": "object"})),
        Route("GET", "/v1/images", list_images, "List images", response=array_of(image)),
        Route("GET", "/v1/images/{name}", get_image, "Describe one image", response=image,
              params={"name": IMAGE_NAME}),
        Route("POST", "/v1/images/build", build_image, "Build an image from a recipe",
              body={"recipe": "string", "name": "string?", "release": "string?",
                    "mirror": "string?", "vm": "boolean?", "cloud_init": "boolean?",
                    "machine": "boolean?"},
              streams=True, response=image),
        Route("POST", "/v1/images/import", import_image,
              "Import a rootfs tarball or directory, or a VM disk (qcow2, raw), as an image",
              body={"name": "string", "path": "string"}, streams=True, response=image),
        Route("DELETE", "/v1/images/{name}", remove_image, "Remove an image not in use",
              response=object_schema({"removed": "string"}), params={"name": IMAGE_NAME}),
        Route("GET", "/openapi.json", openapi, "This OpenAPI description",
              response={"type": "object", "required": ["openapi", "info", "paths"]}),
        *instance_routes(agent),
        *network_routes(agent),
        *snapshot_routes(agent),
        *frontdoor_routes(agent),
        *console_routes(agent),
        *lambda_routes(agent),
        *machine_routes(agent),
    ):
        router.add(route)
    return router
