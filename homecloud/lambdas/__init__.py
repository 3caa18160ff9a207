"""Lambdas: a program run in a fresh sandboxed process for every HTTP request.

A lambda is an instance of kind "lambda" (its driver: homecloud/instances/drivers/lambda_.py,
its service set: service-sets/lambda.yaml); this package is what that driver builds on. Pure
logic (names and limits in ``spec``, the request/response contract in ``cgi``, each lambda's
socket and service units in ``units``) sits under the adapters (the units on disk in
``unitfiles``, the code in the pool in ``code``). The requests themselves are served by
``spawner``, each lambda's own process in its own sandboxed unit: started by its socket on
the first request, it forks a fresh process for every request and exits when idle, so nothing
of a lambda runs between bursts and nothing of it depends on the agent.

This module is imported by the spawner inside the sandbox: it imports nothing.
"""

# The pool keeps each deployed version of a lambda's code as lambdas/NAME.VERSION.
DATASET_PREFIX = "lambdas"
# Where a request's process sees the code (read-only).
CODE_MOUNT = "/lambda"
