#!/usr/bin/env python3
"""moto's server (ECS, Secrets Manager, EC2, ...) on loopback, patched so the
AWS SDK for Rust can drive its ECS emulation (moto 5.2.1).

    python3 scripts/moto_server.py --port 0 --port-file /tmp/moto-port
    python3 scripts/moto_server.py --port 0 --ecs-rate-limits   # AWS's ECS throttling

What the patches fix, each a difference between moto and the ECS API model:
- a container's `cpu`/`memory` come back as JSON numbers (moto defaults
  `cpu` to 0); the model says strings, and the SDK fails to decode every
  response that holds a task;
- RunTask fails (500) when no container sets its own memory, which Fargate
  allows (the task-level size is enough);
- RunTask fails (500) when `securityGroups` is omitted, which AWS allows
  (the VPC's default group applies);
- RunTask with a capacity provider strategy and no `launchType` (what the
  launcher sends: FARGATE or FARGATE_SPOT) is placed like an EC2 task and
  fails for want of container instances; it is a Fargate task.
"""

import argparse
import io
import json
import os
import threading
import time
import types

from moto.ecs import models as ecs
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

_container_init = ecs.Container.__init__


def _container_init_with_string_sizes(self, task_def):
    _container_init(self, task_def)
    self.cpu = None if self.cpu is None else str(self.cpu)
    self.memory = None if self.memory is None else str(self.memory)


_requirements = ecs.EC2ContainerServiceBackend._calculate_task_resource_requirements


def _requirements_with_task_memory(task_definition):
    keys = ("memory", "Memory", "memoryReservation", "MemoryReservation")
    defs = [
        d if any(d.get(k) is not None for k in keys) else dict(d, memory=0)
        for d in task_definition.container_definitions
    ]
    defs = [dict(d, cpu=int(d.get("cpu") or 0)) for d in defs]
    return _requirements(types.SimpleNamespace(container_definitions=defs))


_run_task = ecs.EC2ContainerServiceBackend.run_task


def _run_task_fargate(self, cluster_str, task_definition_str, count, overrides,
                      started_by, tags, launch_type, networking_configuration=None,
                      group=None, platform_version=None):
    if networking_configuration:
        vpc = networking_configuration.setdefault("awsvpcConfiguration", {})
        vpc.setdefault("securityGroups", [])
    if launch_type is None:
        launch_type = "FARGATE"
    return _run_task(self, cluster_str, task_definition_str, count, overrides,
                     started_by, tags, launch_type, networking_configuration,
                     group, platform_version)


ecs.Container.__init__ = _container_init_with_string_sizes
ecs.EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(
    _requirements_with_task_memory
)
ecs.EC2ContainerServiceBackend.run_task = _run_task_fargate


class TokenBucket:
    """AWS's throttling model: `burst` tokens, refilled at `per_second`."""

    def __init__(self, burst, per_second):
        self.capacity = float(burst)
        self.per_second = float(per_second)
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self, n):
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        if self.tokens < n:
            return False
        self.tokens -= n
        return True


# ECS's account-level limits, us-east-1 defaults (docs/benchmarks.md and
# DESIGN.md "Scale" cite them): (burst, refill per second) per API class, and
# the Fargate task launch rate that RunTask's tasks draw on.
ECS_API_BUCKETS = {
    "RunTask": "run_stop",
    "StopTask": "run_stop",
    "DescribeTasks": "describe",
    "ListTasks": "describe",
    "DescribeTaskDefinition": "describe",
    "ListTaskDefinitions": "describe",
    "RegisterTaskDefinition": "register",
}
ECS_LIMITS = {
    "run_stop": (100, 40),
    "describe": (100, 20),
    "register": (20, 1),
    "fargate_launch": (100, 20),
}
ECS_TARGET = "AmazonEC2ContainerServiceV20141113."
STATS_PATH = "/polybot-bench/ecs-throttling"


class EcsRateLimits:
    """WSGI middleware: ECS calls beyond AWS's token buckets are answered as
    ECS answers them (400 ThrottlingException, "Rate exceeded") without
    reaching moto. A RunTask also draws its tasks (`count`) from the Fargate
    launch bucket. GET /polybot-bench/ecs-throttling returns the calls and
    throttles per operation (JSON)."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.buckets = {name: TokenBucket(*limit) for name, limit in ECS_LIMITS.items()}
        self.calls = {}
        self.throttled = {}

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == STATS_PATH:
            with self.lock:
                body = json.dumps({"calls": self.calls, "throttled": self.throttled}).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(ECS_TARGET):
            return self.app(environ, start_response)
        operation = target[len(ECS_TARGET):]
        bucket = ECS_API_BUCKETS.get(operation)
        if bucket is None:
            return self.app(environ, start_response)
        tasks = 0
        if operation == "RunTask":
            # The body is read here and handed on to moto unchanged.
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(raw)
            tasks = int(json.loads(raw or b"{}").get("count", 1))
        with self.lock:
            self.calls[operation] = self.calls.get(operation, 0) + 1
            allowed = self.buckets[bucket].take(1)
            if allowed and tasks and not self.buckets["fargate_launch"].take(tasks):
                # The API token is spent; the launch is refused.
                allowed = False
            if not allowed:
                self.throttled[operation] = self.throttled.get(operation, 0) + 1
        if allowed:
            return self.app(environ, start_response)
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.1"),
                                           ("x-amzn-ErrorType", "ThrottlingException"),
                                           ("Content-Length", str(len(body)))])
        return [body]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="where to write the port once listening")
    parser.add_argument("--ecs-rate-limits", action="store_true",
                        help="throttle ECS calls as AWS does (the fleet benchmark)")
    args = parser.parse_args()
    app = DomainDispatcherApplication(create_backend_app)
    if args.ecs_rate_limits:
        app = EcsRateLimits(app)
    server = make_server(args.host, args.port, app, threaded=True)
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"{server.server_port}\n")
        # Renamed into place so a reader never sees a half-written file.
        os.replace(args.port_file + ".tmp", args.port_file)
    print(f"moto listening on http://{args.host}:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
