#!/usr/bin/env python3
"""Checks the deployment files against each other and against the host's config: every YAML in
deploy/k8s and compose.yaml parses, the probes ask the gRPC health service on the port the TOML
listens on, the config is mounted where the image's command reads it, every secret a file key
or an env var names exists and is mounted where the TOML looks, the grace periods outlast the
drain, resources are limited. Usage: check_manifests.py SOURCE_DIR. Exit 77 (skipped) without
Debian's python3-yaml."""
import os
import re
import sys
import tomllib

try:
    import yaml
except ImportError:
    print("python3-yaml is not installed: Debian's python3-yaml package (tools/gv deps installs it)")
    sys.exit(77)

ROOT = sys.argv[1]
problems = []


def check(condition, message):
    if not condition:
        problems.append(message)
    return condition


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


# Every manifest parses; index them by kind and name.
k8s_dir = os.path.join(ROOT, "deploy", "k8s")
objects = {}
for name in sorted(os.listdir(k8s_dir)):
    if name.endswith((".yaml", ".yml")):
        for doc in load_all(os.path.join(k8s_dir, name)):
            check("kind" in doc, f"{name}: a document without kind")
            objects[(doc.get("kind"), doc.get("metadata", {}).get("name"))] = doc
compose = load_all(os.path.join(ROOT, "compose.yaml"))[0]

# The image: its command's config path and its HEALTHCHECK.
dockerfile = open(os.path.join(ROOT, "Dockerfile")).read()
cmd = re.search(r'^CMD \[(.*)\]$', dockerfile, re.M)
image_config = re.findall(r'"([^"]+)"', cmd.group(1))[-1] if cmd else ""
check(image_config == "/etc/gameverse/config/gameverse.toml", f"Dockerfile CMD reads {image_config!r}")
check(re.search(r'^HEALTHCHECK .*CMD \["gvctl", "health"\]', dockerfile, re.M), "Dockerfile: no gvctl health HEALTHCHECK")
check(re.search(r"^STOPSIGNAL SIGTERM$", dockerfile, re.M), "Dockerfile: STOPSIGNAL is not SIGTERM")
check(re.search(r"^USER 10001", dockerfile, re.M), "Dockerfile: does not run as the unprivileged user")
addr_env = re.search(r"GAMEVERSE_ADDR=([0-9.:]+)", dockerfile)
with open(os.path.join(ROOT, "deploy", "image", "gameverse.toml"), "rb") as f:
    image_toml = tomllib.load(f)
grpc_port = port_of(image_toml["server"]["listen"])
http_port = port_of(image_toml["http"]["listen"])
check(addr_env and port_of(addr_env.group(1)) == grpc_port, "Dockerfile: GAMEVERSE_ADDR is not the TOML's port")
check(re.search(rf"^EXPOSE {grpc_port} {http_port}$", dockerfile, re.M), "Dockerfile: EXPOSE is not the TOML's ports")
drain_s = image_toml["server"].get("drain_timeout_ms", 5000) / 1000
PLUGIN_FINISH_GRACE_S = 5  # host/src/rpc/server.cpp: cancelled calls' plugins get this long more

# Kubernetes: the ConfigMap holds the image's TOML, mounted where the container's args point.
configmap = objects.get(("ConfigMap", "gameverse-config"))
deployment = objects.get(("Deployment", "gameverse"))
if check(configmap and deployment, "deploy/k8s: no ConfigMap gameverse-config or Deployment gameverse"):
    toml_text = configmap["data"]["gameverse.toml"]
    check(tomllib.loads(toml_text) == image_toml, "the ConfigMap's TOML is not deploy/image/gameverse.toml")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["volumeName"] if "volumeName" in m else m["name"]] for m in container["volumeMounts"]}
    config_path = container["args"][container["args"].index("--config") + 1]
    check(config_path == image_config, f"the container reads {config_path}, the image {image_config}")
    config_volume = mounts.get(os.path.dirname(config_path))
    check(config_volume and config_volume.get("configMap", {}).get("name") == "gameverse-config",
          f"{os.path.dirname(config_path)} is not the ConfigMap's mount")
    check(os.path.basename(config_path) in configmap["data"], f"the ConfigMap has no {os.path.basename(config_path)}")

    # Ports and probes: the gRPC health service on the port the TOML listens on.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    check(ports.get("grpc") == grpc_port, f"container port grpc is {ports.get('grpc')}, the TOML listens on {grpc_port}")
    check(ports.get("http") == http_port, f"container port http is {ports.get('http')}, the TOML's [http] {http_port}")
    for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(probe_name)
        if not check(probe, f"no {probe_name}"):
            continue
        if "grpc" in probe:
            check(probe["grpc"]["port"] in (grpc_port, "grpc"), f"{probe_name}: grpc port {probe['grpc']['port']}")
        else:
            command = probe.get("exec", {}).get("command", [])
            check(command[:2] == ["gvctl", "health"], f"{probe_name}: {command} is not gvctl health")
            addr = command[command.index("--addr") + 1] if "--addr" in command else ""
            check(addr and port_of(addr) == grpc_port, f"{probe_name}: asks {addr!r}, not port {grpc_port}")
    env = {e["name"]: e for e in container.get("env", [])}
    if check(image_toml.get("server", {}).get("tls") is None or "GAMEVERSE_TLS_CA" in env,
             "the port serves TLS but the probes are given no CA (GAMEVERSE_TLS_CA)"):
        ca = env.get("GAMEVERSE_TLS_CA", {}).get("value")
        files = [ca] if ca else []

    # Secrets: every file the TOML reads is in a mounted Secret that exists and has the key.
    def secret_file(path, what):
        directory, name = os.path.split(path)
        volume = mounts.get(directory)
        if not check(volume and "secret" in volume, f"{what}: {directory} is not a Secret's mount"):
            return
        secret = objects.get(("Secret", volume["secret"]["secretName"]))
        if not check(secret, f"{what}: Secret {volume['secret']['secretName']} is not in deploy/k8s"):
            return
        keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
        items = {i["path"]: i["key"] for i in volume["secret"].get("items", [])} or {k: k for k in keys}
        check(name in items and items[name] in keys, f"{what}: {path} is not a key of Secret {secret['metadata']['name']}")

    file_keys = [(f"{section}.{key}", value) for section, table in image_toml.items() if isinstance(table, dict)
                 for key, value in table.items() if key.endswith("_file")]
    file_keys += [(f"server.tls.{k}", v) for k, v in image_toml["server"].get("tls", {}).items() if k.endswith("_file")]
    for plugin in image_toml.get("plugin", []):
        file_keys += [(f"plugin {plugin['name']}.{k}", v) for k, v in plugin.get("config", {}).items() if k.endswith("_file")]
    check(len(file_keys) >= 5, f"the TOML reads only {file_keys} from files")
    for what, path in file_keys + [("GAMEVERSE_TLS_CA", p) for p in files]:
        secret_file(path, what)
    for e in env.values():
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            secret = objects.get(("Secret", ref["name"]), {})
            check(ref["key"] in secret.get("stringData", {}) or ref["key"] in secret.get("data", {}),
                  f"env {e['name']}: Secret {ref['name']} has no key {ref['key']}")

    # Draining outlasts nothing: the grace period covers preStop, the drain and the plugins' grace.
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pause = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0
    grace = pod.get("terminationGracePeriodSeconds", 30)
    check(grace > pause + drain_s + PLUGIN_FINISH_GRACE_S,
          f"terminationGracePeriodSeconds {grace} <= preStop {pause} s + drain {drain_s} s + {PLUGIN_FINISH_GRACE_S} s")
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        for what in ("cpu", "memory"):
            check(what in resources.get(kind, {}), f"resources.{kind}.{what} is not set")
    check(pod.get("securityContext", {}).get("runAsNonRoot") is True, "the pod may run as root")

    service = objects.get(("Service", "gameverse"))
    if check(service, "no Service gameverse"):
        target = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}.get("grpc")
        check(target == "grpc" or target == grpc_port, f"the Service's grpc port targets {target}")
        check(service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items(),
              "the Service selects no pod of the Deployment")
    pdb = objects.get(("PodDisruptionBudget", "gameverse"))
    if check(pdb, "no PodDisruptionBudget gameverse"):
        check(pdb["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items(),
              "the PodDisruptionBudget selects no pod of the Deployment")
        check(pdb["spec"].get("maxUnavailable", 0) < deployment["spec"]["replicas"] or
              pdb["spec"].get("minAvailable", 0) >= 1, "the PodDisruptionBudget lets every pod go at once")
    kustomization = objects.get(("Kustomization", None), {})
    for resource in kustomization.get("resources", []):
        check(os.path.exists(os.path.join(k8s_dir, resource)), f"kustomization.yaml: no {resource}")

# compose: the hosts read their config where the image does, outlast the drain, and are nginx's
# upstreams on the port their TOML listens on.
with open(os.path.join(ROOT, "deploy", "compose", "gameverse.toml"), "rb") as f:
    compose_toml = tomllib.load(f)
services = compose["services"]
for needed in ("postgres", "redis", "host-a", "host-b", "nginx"):
    check(needed in services, f"compose.yaml: no service {needed}")
for host in ("host-a", "host-b"):
    service = services.get(host, {})
    targets = [c["target"] for c in service.get("configs", [])]
    check(image_config in targets, f"compose {host}: no config at {image_config}")
    grace = service.get("stop_grace_period", "10s")
    check(int(grace.rstrip("s")) > compose_toml["server"].get("drain_timeout_ms", 5000) / 1000 + PLUGIN_FINISH_GRACE_S,
          f"compose {host}: stop_grace_period {grace} does not outlast the drain")
    check(service.get("stop_signal", "SIGTERM") == "SIGTERM", f"compose {host}: stop_signal is not SIGTERM")
    for secret in service.get("secrets", []):
        check(secret["source"] in compose.get("secrets", {}), f"compose {host}: secret {secret['source']} is not defined")
    secret_targets = {s["target"] for s in service.get("secrets", [])}
    for section, table in compose_toml.items():
        if isinstance(table, dict):
            for key, value in table.items():
                if key.endswith("_file"):
                    check(value in secret_targets, f"compose {host}: {section}.{key} {value} is not a mounted secret")
    check("tls" not in compose_toml["server"] or service.get("environment", {}).get("GAMEVERSE_TLS_CA"),
          f"compose {host}: TLS without a CA for the HEALTHCHECK")
nginx_conf_host = [v.split(":")[0] for v in services.get("nginx", {}).get("volumes", [])]
check("./deploy/nginx/gameverse.conf" in nginx_conf_host, "compose nginx: deploy/nginx/gameverse.conf is not mounted")
nginx_conf = open(os.path.join(ROOT, "deploy", "nginx", "gameverse.conf")).read()
upstreams = re.findall(r"^\s*server ([\w.-]+):(\d+)", nginx_conf, re.M)
check(sorted(h for h, _ in upstreams) == ["host-a", "host-b"], f"nginx upstreams {upstreams} are not the compose hosts")
check(all(int(p) == port_of(compose_toml["server"]["listen"]) for _, p in upstreams), "nginx upstream ports are not the hosts'")
check("grpc_pass grpc://gameverse;" in nginx_conf, "nginx does not grpc_pass to the upstream")
check(not re.search(r"grpc_next_upstream[^;]*non_idempotent", nginx_conf), "nginx would re-send calls a host already had")

if problems:
    for problem in problems:
        print("FAIL:", problem)
    sys.exit(1)
print(f"deployment files agree: {len(objects)} Kubernetes objects, {len(services)} compose services, gRPC port {grpc_port}")
