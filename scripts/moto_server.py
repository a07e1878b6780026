#!/usr/bin/env python3
"""moto's server (ECS, Secrets Manager, EC2, ...) on loopback, patched so the
AWS SDK for Rust can drive its ECS emulation (moto 5.2.1).

    python3 scripts/moto_server.py --port 0 --port-file /tmp/moto-port

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
import os
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="where to write the port once listening")
    args = parser.parse_args()
    app = DomainDispatcherApplication(create_backend_app)
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
