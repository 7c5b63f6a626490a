"""Write the Docker Swarm stack file for this project to standard output.

    python3 deploy/swarm/stack.py > stack.json
    docker stack deploy --resolve-image never --prune -c stack.json chat-stream

`docker compose config` merges compose.yaml with the Swarm overlay
(deploy/swarm/compose.swarm.yaml) and fills in every variable, as for
`make up`; this script then drops what `docker stack deploy` does not take
(its file format is Compose 3.9): builds (Swarm runs images that exist: build
them first with `docker compose build`), depends_on with conditions (Swarm
starts services in any order, restarts a task until its health check passes),
`restart` (Swarm uses deploy.restart_policy) and the project name (the stack's
name replaces it). Only the standard library: it runs before any environment
is set up.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FILES = ["compose.yaml", "deploy/swarm/compose.swarm.yaml"]
DROPPED = ("build", "depends_on", "restart")


def stack(config: dict[str, Any]) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = {}
    for name, service in config["services"].items():
        kept = {key: value for key, value in service.items() if key not in DROPPED and value is not None}
        for port in kept.get("ports", []):
            port["published"] = int(port["published"])  # compose writes a string, 3.9 wants a number
        services[name] = kept
    used = {
        secret if isinstance(secret, str) else secret["source"]
        for service in services.values()
        for secret in service.get("secrets", [])
    }
    result: dict[str, Any] = {"version": "3.9", "services": services}
    # The stack names its own networks (<stack>_default), on Swarm's overlay driver.
    result["networks"] = {
        name: {key: value for key, value in network.items() if key != "name"}
        for name, network in config["networks"].items()
    }
    secrets = {name: secret for name, secret in config.get("secrets", {}).items() if name in used}
    if secrets:
        result["secrets"] = secrets
    return result


def main() -> None:
    command = ["docker", "compose", "--project-directory", str(ROOT)]
    for file in FILES:
        command += ["-f", str(ROOT / file)]
    merged = subprocess.run([*command, "config", "--format", "json"], capture_output=True, text=True, check=False)
    if merged.returncode != 0:
        sys.exit(merged.stderr.strip())
    json.dump(stack(json.loads(merged.stdout)), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
