#!/usr/bin/env python3
"""A node agent for the e2e rig: it plays the kubelet of the rig's nodes for the pods of one namespace.

The nodes are one, `e2e-node`, with no address of its own (status.hostIP 127.0.0.1), unless
--nodes names several, each with a zone and an address: the agent creates their Node objects
(hostname, zone and region labels; InternalIP), puts each address on the rig's outside link, and
plays kube-scheduler for them (see choose_node) and kube-proxy (see NodePorts).

For each pod the StatefulSet controller creates it binds the pod to a node, gives it a network
namespace with a pod IP on the rig's bridge, runs its init containers in order to their exit
(in a thread of the pod's own, as the kubelet starts pods side by side, so a pod whose init
container waits for its load balancer's DNS record does not hold up the cloud that makes it;
restarted with a back-off when one fails; an image named kafka-listener-injector is the binary
given with --kli-binary), then the pod's broker container as a real process
(a real Apache Kafka broker: the container's `command`/`args` when it has them, else the
image's entrypoint: apache/kafka's, which tests/e2e/kafka/image-run.sh stands in for (and
kafka-server-start.sh and kafka-storage.sh in its bin/ for charts that call them), or
bitnami/kafka's, tests/e2e/kafka/bitnami-run.sh, with bitnami-lib.sh for the image's script
library), and reports the pod Running, then Ready once the readiness port accepts connections,
through the API server. So the StatefulSet controller's OrderedReady rollout proceeds pod by
pod, as in a cluster. Each container has a private mount namespace: each volume mount is a
directory of the pod (a subPath a file in it); emptyDir volumes start empty in each new pod,
Secret, ConfigMap and projected volumes are filled at each start, others (a PVC's) are kept.

Everything the broker is configured with comes from the pod as the API server stored it (after
the webhook): its env (value, $(VAR) references, ConfigMap/Secret keys, downward API fields),
envFrom ConfigMaps, command and args. A pod the webhook did not inject gets no external listener.

The pod is started from the object as listed after its binding, so the labels the API server's
PodTopologyLabels admission copied from the node (topology.kubernetes.io/zone and /region) are
there for the downward API, as the kubelet sees them.

Cluster DNS: one hosts file, shared by every pod namespace, with `<pod>.<subdomain>.<ns>.svc`
(and `.svc.cluster.local`) for each running pod, rewritten in place as pods come and go.

It also plays the cloud around the cluster: each Service of type LoadBalancer gets two addresses
of its own (one per "zone", as an AWS NLB has; on the rig's "outside" link) forwarding to the pod
its selector names, written to the Service's status as a cloud controller does (for a Service
annotated service.beta.kubernetes.io/aws-load-balancer-type, a name instead, as AWS reports an
ELB, which answers with one of the addresses, another each second); and, as
external-dns does, the outside resolver (a hosts file used only by the outside namespace) gets
records for each `external-dns.alpha.kubernetes.io/hostname` annotation pointing at those
addresses, in an order that rotates every second as CoreDNS' loadbalance plugin and round-robin
resolvers answer, each name after the delay (from when it first appeared on the Service)
written in --dns-delay-file (seconds; none without the file), as external-dns' sync interval
delays a real record. A Service that selects pods by other labels than the pod name (a bootstrap
Service) forwards to the first running pod it selects.

Readiness follows the kubelet's rule: Ready when the containers are ready and every readiness
gate's condition is True; status patches are strategic, so conditions others set (a readiness
gate's) stay.
"""

import argparse
import base64
import fractions
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

ZONE = "topology.kubernetes.io/zone"
REGION = "topology.kubernetes.io/region"
HOSTNAME = "kubernetes.io/hostname"
BITNAMI_ENTRYPOINT = "/opt/bitnami/scripts/kafka/entrypoint.sh"


def kubectl(*args, stdin=None, check=True):
    result = subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def log(message):
    print(f"node-agent: {message}", file=sys.stderr, flush=True)


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


class Network:
    """The bridge namespace, one namespace per pod, and the shared cluster hosts file."""

    def __init__(self, prefix, bridge_ns, subnet, hosts_file):
        self.prefix = prefix
        self.bridge_ns = bridge_ns
        self.subnet = subnet  # e.g. "10.77.1"
        self.hosts_file = hosts_file
        self.next_host = 10
        self.hosts = {}  # pod key -> (ip, [names])

    def add_pod(self, key, names):
        ip = f"{self.subnet}.{self.next_host}"
        self.next_host += 1
        netns = f"{self.prefix}{self.next_host - 1}"
        os.makedirs(f"/etc/netns/{netns}", exist_ok=True)
        hosts_link = f"/etc/netns/{netns}/hosts"
        if os.path.lexists(hosts_link):
            os.remove(hosts_link)
        os.symlink(self.hosts_file, hosts_link)
        host_if, pod_if = f"h{netns[-8:]}", f"p{netns[-8:]}"
        sh("ip", "netns", "add", netns)
        sh("ip", "-n", self.bridge_ns, "link", "add", host_if, "type", "veth", "peer", "name", pod_if)
        sh("ip", "-n", self.bridge_ns, "link", "set", pod_if, "netns", netns)
        sh("ip", "-n", self.bridge_ns, "link", "set", host_if, "master", "br0", "up")
        sh("ip", "-n", netns, "link", "set", "lo", "up")
        sh("ip", "-n", netns, "link", "set", pod_if, "name", "eth0")
        sh("ip", "-n", netns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", netns, "link", "set", "eth0", "up")
        self.hosts[key] = (ip, names)
        self.write_hosts()
        return netns, ip

    def remove_pod(self, key, netns):
        self.hosts.pop(key, None)
        self.write_hosts()
        sh("ip", "netns", "del", netns, check=False)
        try:
            os.remove(f"/etc/netns/{netns}/hosts")
            os.rmdir(f"/etc/netns/{netns}")
        except OSError:
            pass

    def write_hosts(self):
        lines = ["127.0.0.1 localhost"]
        lines += [f"{ip} {' '.join(names)}" for ip, names in self.hosts.values()]
        # In place: every pod namespace has this inode bind-mounted as its /etc/hosts.
        with open(self.hosts_file, "r+" if os.path.exists(self.hosts_file) else "w") as f:
            f.seek(0)
            f.write("\n".join(lines) + "\n")
            f.truncate()


class Pod:
    def __init__(self, obj):
        self.obj = obj
        meta = obj["metadata"]
        self.name = meta["name"]
        self.namespace = meta["namespace"]
        self.uid = meta["uid"]
        self.key = f"{self.namespace}/{self.name}"


def expand(text, env):
    """Kubernetes' $(VAR) expansion: $$ escapes, unknown references stay as written."""

    def one(match):
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", one, text)


def field_value(pod, ip, host_ip, path):
    meta = pod.obj["metadata"]
    simple = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "status.podIP": ip,
        "status.podIPs": ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "spec.nodeName": pod.obj["spec"].get("nodeName", ""),
    }
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return meta.get(match.group(1), {}).get(match.group(2), "")
    raise ValueError(f"unsupported fieldRef {path}")


# What a node offers when a container sets no limit (the kubelet's allocatable).
NODE_ALLOCATABLE = {"cpu": "4", "memory": "16Gi", "ephemeral-storage": "100Gi"}
QUANTITY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
                     "n": fractions.Fraction(1, 10**9), "u": fractions.Fraction(1, 10**6),
                     "m": fractions.Fraction(1, 1000), "k": 10**3, "M": 10**6, "G": 10**9,
                     "T": 10**12, "P": 10**15, "E": 10**18}


def quantity(text):
    """A Kubernetes resource quantity (250m, 1.5Gi, 2e3) as an exact fraction."""
    match = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)", str(text).strip())
    if not match or match.group(2) not in QUANTITY_SUFFIXES and match.group(2) != "":
        raise ValueError(f"not a quantity: {text!r}")
    return fractions.Fraction(match.group(1)) * QUANTITY_SUFFIXES.get(match.group(2), 1)


def resource_value(pod, container, ref):
    """A resourceFieldRef as the kubelet resolves it: the named container's (default: this one's)
    request or limit divided by the divisor (default 1), rounded up; an unset limit is the node's
    allocatable, an unset request 0 (the API server has already copied limits into unset
    requests)."""
    name = ref.get("containerName") or container["name"]
    spec = pod.obj["spec"]
    target = next(c for c in spec.get("containers", []) + spec.get("initContainers", [])
                  if c["name"] == name)
    kind, resource = ref["resource"].split(".", 1)
    value = (target.get("resources") or {}).get(kind, {}).get(resource)
    if value is None:
        value = NODE_ALLOCATABLE[resource] if kind == "limits" else "0"
    # The API server stores an unset divisor as "0", which the kubelet reads as 1.
    divisor = quantity(ref.get("divisor") or "1") or 1
    amount = quantity(value) / divisor
    return str(-(-amount.numerator // amount.denominator))


def container_env(pod, container, ip, host_ip):
    """The container's environment as the kubelet builds it."""
    namespace = pod.namespace
    cache = {}

    def source(kind, name):
        if (kind, name) not in cache:
            obj = json.loads(kubectl("get", kind, "-n", namespace, name, "-o", "json"))
            data = obj.get("data", {})
            if kind == "secret":
                # Bytes as they are (a key store beside a password): env gets them unchanged.
                data = {k: base64.b64decode(v).decode(errors="surrogateescape") for k, v in data.items()}
            cache[(kind, name)] = data
        return cache[(kind, name)]

    # Service links first (the container's own variables override them, and may refer to them).
    env = service_link_env(namespace, pod.obj["spec"].get("enableServiceLinks", True))
    for ref in container.get("envFrom", []):
        prefix = ref.get("prefix", "")
        if "configMapRef" in ref:
            data = source("configmap", ref["configMapRef"]["name"])
        else:
            data = source("secret", ref["secretRef"]["name"])
        env.update({prefix + k: v for k, v in data.items()})
    for var in container.get("env", []):
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        value_from = var["valueFrom"]
        if "configMapKeyRef" in value_from:
            ref = value_from["configMapKeyRef"]
            env[name] = source("configmap", ref["name"])[ref["key"]]
        elif "secretKeyRef" in value_from:
            ref = value_from["secretKeyRef"]
            env[name] = source("secret", ref["name"])[ref["key"]]
        elif "fieldRef" in value_from:
            env[name] = field_value(pod, ip, host_ip, value_from["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in value_from:
            env[name] = resource_value(pod, container, value_from["resourceFieldRef"])
        else:
            raise ValueError(f"unsupported valueFrom in env {name}")
    env["HOSTNAME"] = pod.name
    return env


def service_link_env(namespace, links):
    """The variables the kubelet derives from Services (docker links style): for each Service of
    the pod's namespace with a cluster IP, when enableServiceLinks is not false, and always for
    the API server's `kubernetes` Service in default. A Service named `kafka` gives KAFKA_PORT,
    KAFKA_SERVICE_HOST and more, which images that read KAFKA_* settings from env may take as
    their own."""
    services = [s for s in json.loads(kubectl("get", "services", "-n", "default", "-o", "json"))["items"]
                if s["metadata"]["name"] == "kubernetes"]
    if links:
        services = json.loads(kubectl("get", "services", "-n", namespace, "-o", "json"))["items"] + \
            ([] if namespace == "default" else services)
    env = {}
    for svc in services:
        spec = svc["spec"]
        ip = spec.get("clusterIP", "")
        ports = spec.get("ports") or []
        if ip in ("", "None") or not ports:
            continue
        name = svc["metadata"]["name"].upper().replace("-", "_")
        first = ports[0]
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(first["port"])
        env[f"{name}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
        for port in ports:
            protocol = port.get("protocol", "TCP")
            if port.get("name"):
                env[f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
            prefix = f"{name}_PORT_{port['port']}_{protocol.upper()}"
            env[prefix] = f"{protocol.lower()}://{ip}:{port['port']}"
            env[f"{prefix}_PROTO"] = protocol.lower()
            env[f"{prefix}_PORT"] = str(port["port"])
            env[f"{prefix}_ADDR"] = ip
    return env


class Cloud:
    """LoadBalancer addresses and external-dns records for the Services of one namespace."""

    HOSTNAME = "external-dns.alpha.kubernetes.io/hostname"
    AWS_TYPE = "service.beta.kubernetes.io/aws-load-balancer-type"

    def __init__(self, args):
        self.args = args
        self.next_host = 10
        self.balancers = {}  # service uid -> dict(ips, procs, hostnames: first seen, name, backend)
        self.rotation = 0

    def dns_delay(self):
        try:
            with open(self.args.dns_delay_file) as f:
                return float(f.read().strip() or 0)
        except (OSError, ValueError, TypeError):
            return 0.0

    def sync(self, services, pods):
        by_name = {pod.name: pod for pod in pods}
        seen = set()
        for svc in services:
            if svc["spec"].get("type") != "LoadBalancer":
                continue
            uid = svc["metadata"]["uid"]
            seen.add(uid)
            selector = svc["spec"].get("selector") or {}
            pod_name = selector.get("statefulset.kubernetes.io/pod-name")
            if pod_name is None and selector:
                matching = sorted(p.name for p in pods
                                  if all((p.obj["metadata"].get("labels") or {}).get(k) == v
                                         for k, v in selector.items()))
                pod_name = matching[0] if matching else None
            pod = by_name.get(pod_name)
            if pod is None or not pod.obj["spec"].get("subdomain"):
                continue  # no endpoint (yet): a cloud keeps the address and waits too
            backend = f"{pod.name}.{pod.obj['spec']['subdomain']}.{pod.namespace}.svc"
            entry = self.balancers.get(uid)
            if entry is None:
                self.add(svc, backend)
            elif entry["backend"] != backend:
                self.retarget(svc, backend)  # the selector changed; the address stays
            # As external-dns does, records follow the annotation as it is now; a name new on
            # the annotation is published after the delay, as a new record is.
            entry = self.balancers[uid]
            now = time.monotonic()
            entry["hostnames"] = {h: entry["hostnames"].get(h, now) for h in self.hostnames(svc)}
            aws = self.AWS_TYPE in (svc["metadata"].get("annotations") or {})
            if entry.get("aws") != aws:
                self.report(svc, aws)
        for uid in list(self.balancers):
            if uid not in seen:
                self.remove(uid)
        self.write_hosts()

    def add(self, svc, backend):
        ips = [f"{self.args.lb_subnet}.{self.next_host}", f"{self.args.lb_subnet}.{self.next_host + 100}"]
        self.next_host += 1
        for ip in ips:
            sh("ip", "-n", self.args.bridge_ns, "addr", "add", f"{ip}/32", "dev", self.args.lb_dev)
        procs = self.forward(svc, ips, backend)
        name = svc["metadata"]["name"]
        hostnames = self.hostnames(svc)
        # hostname -> when it was first seen on the Service: its record is published after the delay
        first_seen = {h: time.monotonic() for h in hostnames}
        self.balancers[svc["metadata"]["uid"]] = {"ips": ips, "procs": procs, "hostnames": first_seen,
                                                  "name": name, "backend": backend}
        log(f"service {name}: load balancer {' '.join(ips)} -> {backend}; DNS {', '.join(hostnames) or '-'}")

    def report(self, svc, aws):
        """The load balancer in the Service's status: its addresses, or, for a Service annotated
        for AWS, only a name of its own, as AWS reports an ELB; that name answers with one of
        the addresses at a time, another each second, as an ELB's name answers with a subset of
        its nodes (see write_hosts)."""
        entry = self.balancers[svc["metadata"]["uid"]]
        name = svc["metadata"]["name"]
        entry["aws"] = aws
        entry["lb_name"] = f"{name}-{svc['metadata']['uid'][:8]}.elb.{self.args.region}.amazonaws.com" if aws else None
        ingress = [{"hostname": entry["lb_name"]}] if aws else [{"ip": ip} for ip in entry["ips"]]
        kubectl("patch", "service", "-n", svc["metadata"]["namespace"], name, "--subresource=status",
                "--type=merge", "-p", json.dumps({"status": {"loadBalancer": {"ingress": ingress}}}),
                check=False)
        if aws:
            log(f"service {name}: load balancer reported by name, {entry['lb_name']}")

    def forward(self, svc, ips, backend):
        procs = []
        for ip in ips:
            for port in svc["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                procs.append(subprocess.Popen(
                    ["ip", "netns", "exec", self.args.bridge_ns, "socat",
                     f"TCP-LISTEN:{port['port']},bind={ip},fork,reuseaddr", f"TCP:{backend}:{target}"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        return procs

    def retarget(self, svc, backend):
        entry = self.balancers[svc["metadata"]["uid"]]
        for proc in entry["procs"]:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
        entry["procs"] = self.forward(svc, entry["ips"], backend)
        entry["backend"] = backend
        log(f"service {entry['name']}: load balancer {' '.join(entry['ips'])} now -> {backend}")

    def hostnames(self, svc):
        value = (svc["metadata"].get("annotations") or {}).get(self.HOSTNAME, "")
        return [h.strip() for h in value.split(",") if h.strip()]

    def remove(self, uid):
        entry = self.balancers.pop(uid)
        for proc in entry["procs"]:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
        for ip in entry["ips"]:
            sh("ip", "-n", self.args.bridge_ns, "addr", "del", f"{ip}/32", "dev", self.args.lb_dev, check=False)
        log(f"service {entry['name']}: load balancer {' '.join(entry['ips'])} removed")

    def write_hosts(self):
        published = time.monotonic() - self.dns_delay()
        # A name's records in another order each second: the answer set is the same, its order
        # is not, as a client of a round-robin resolver sees.
        self.rotation = int(time.monotonic())
        lines = []
        for e in self.balancers.values():
            turn = self.rotation % len(e["ips"])
            ips = e["ips"][turn:] + e["ips"][:turn]
            lines += [f"{ip} {h}" for h, seen in e["hostnames"].items() if seen <= published for ip in ips]
            if e.get("lb_name"):
                lines.append(f"{ips[0]} {e['lb_name']}")
        text = "\n".join(lines) + "\n"
        if text == getattr(self, "written", None):
            return
        self.written = text
        with open(self.args.outside_hosts, "r+" if os.path.exists(self.args.outside_hosts) else "w") as f:
            f.seek(0)
            f.write(text)
            f.truncate()

    def close(self):
        for uid in list(self.balancers):
            self.remove(uid)


class Node:
    """One of the rig's nodes, from --nodes: `name[=zone[=address]]`."""

    def __init__(self, text, region):
        parts = text.strip().split("=")
        if not parts[0] or len(parts) > 3:
            raise ValueError(f"--nodes: {text!r} is not name[=zone[=address]]")
        self.name = parts[0]
        self.zone = parts[1] if len(parts) > 1 and parts[1] else None
        self.address = parts[2] if len(parts) > 2 and parts[2] else None
        self.region = region if self.zone else None

    def host_ip(self):
        # A node without an address of its own is this machine, as the single node always was.
        return self.address or "127.0.0.1"

    def manifest(self):
        labels = {HOSTNAME: self.name}
        if self.zone:
            labels.update({ZONE: self.zone, REGION: self.region})
        return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.name, "labels": labels}}


def parse_nodes(text, region):
    nodes = [Node(item, region) for item in text.split(",") if item.strip()]
    if not nodes or len({n.name for n in nodes}) != len(nodes):
        raise ValueError(f"--nodes {text!r}: one node at least, each name once")
    return nodes


def requirement_matches(requirement, values):
    """One matchExpressions/matchFields entry of a node selector term, as the scheduler reads it."""
    key, operator = requirement["key"], requirement["operator"]
    wanted = requirement.get("values") or []
    if operator == "In":
        return key in values and values[key] in wanted
    if operator == "NotIn":
        return key not in values or values[key] not in wanted
    if operator == "Exists":
        return key in values
    if operator == "DoesNotExist":
        return key not in values
    if operator in ("Gt", "Lt") and key in values:
        try:
            have, limit = int(values[key]), int(wanted[0])
        except (ValueError, IndexError):
            return False
        return have > limit if operator == "Gt" else have < limit
    return False


def node_fits(spec, node):
    """The scheduler's filters the rig's pods can meet: cordon, nodeSelector, required node affinity."""
    if node["spec"].get("unschedulable"):
        return False
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms")
    if not terms:
        return True
    fields = {"metadata.name": node["metadata"]["name"]}

    def term_matches(term):
        checks = ([(r, labels) for r in term.get("matchExpressions") or []]
                  + [(r, fields) for r in term.get("matchFields") or []])
        return bool(checks) and all(requirement_matches(r, values) for r, values in checks)

    return any(term_matches(term) for term in terms)


def controller_of(pod_obj):
    refs = pod_obj["metadata"].get("ownerReferences") or []
    return next((r["uid"] for r in refs if r.get("controller")), None)


def choose_node(pod_obj, nodes, pods):
    """The node a pending pod is bound to, or None when none fits. Among the nodes that fit, the
    one with the fewest pods of the pod's owner (kube-scheduler's default spreading of a
    StatefulSet's pods), then the fewest pods of the namespace, then the first by name."""
    owner = controller_of(pod_obj)
    placed = [p for p in pods if p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")]

    def load(node):
        name = node["metadata"]["name"]
        on_node = [p for p in placed if p["spec"]["nodeName"] == name]
        same_owner = sum(1 for p in on_node if owner and controller_of(p) == owner)
        return same_owner, len(on_node), name

    fitting = [n for n in nodes if node_fits(pod_obj["spec"], n)]
    return min(fitting, key=load)["metadata"]["name"] if fitting else None


class NodePorts:
    """kube-proxy's NodePort rules on the rig's node addresses: <node address>:<nodePort> of each
    NodePort (or LoadBalancer) Service forwards to a pod it selects, at the port's targetPort,
    through socat in the bridge namespace, where the node addresses are. With
    externalTrafficPolicy Local only a node that runs a selected pod listens (the others refuse
    the connection); with Cluster every node forwards (to a pod of its own if it has one). A rule
    follows its pod: when the pod runs again elsewhere, with another IP, it is retargeted."""

    def __init__(self, bridge_ns, nodes):
        self.bridge_ns = bridge_ns
        self.nodes = [n for n in nodes if n.address]
        self.forwards = {}  # (node address, nodePort) -> dict(backend, proc, service)

    def sync(self, services, running):
        """`running`: (pod object, pod IP) of each pod whose container runs."""
        wanted = {}
        for svc in services if self.nodes else []:
            spec = svc["spec"]
            selector = spec.get("selector") or {}
            if spec.get("type") not in ("NodePort", "LoadBalancer") or not selector:
                continue
            endpoints = sorted(
                ((obj, ip) for obj, ip in running
                 if all((obj["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())),
                key=lambda e: e[0]["metadata"]["name"])
            local_only = spec.get("externalTrafficPolicy") == "Local"
            for port in spec.get("ports") or []:
                if not port.get("nodePort") or port.get("protocol", "TCP") != "TCP":
                    continue
                for node in self.nodes:
                    local = [e for e in endpoints if e[0]["spec"].get("nodeName") == node.name]
                    chosen = local or ([] if local_only else endpoints)
                    if chosen:
                        obj, ip = chosen[0]
                        wanted[(node.address, port["nodePort"])] = {
                            "backend": f"{ip}:{target_port(port, obj)}",
                            "service": svc["metadata"]["name"]}
        for key in list(self.forwards):
            if self.forwards[key]["backend"] != wanted.get(key, {}).get("backend"):
                self.stop(key)
        for key, rule in wanted.items():
            if key not in self.forwards:
                self.start(key, rule)

    def start(self, key, rule):
        address, node_port = key
        rule["proc"] = subprocess.Popen(
            ["ip", "netns", "exec", self.bridge_ns, "socat",
             f"TCP-LISTEN:{node_port},bind={address},fork,reuseaddr", f"TCP:{rule['backend']}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.forwards[key] = rule
        log(f"service {rule['service']}: node port {address}:{node_port} -> {rule['backend']}")

    def stop(self, key):
        rule = self.forwards.pop(key)
        os.killpg(rule["proc"].pid, signal.SIGTERM)
        rule["proc"].wait()
        log(f"service {rule['service']}: node port {key[0]}:{key[1]} closed")

    def close(self):
        for key in list(self.forwards):
            self.stop(key)


def target_port(port, pod_obj):
    """A Service port's targetPort on a pod: a number, or a container port's name."""
    target = port.get("targetPort", port["port"])
    if isinstance(target, int):
        return target
    if target.isdigit():
        return int(target)
    for container in pod_obj["spec"]["containers"]:
        for p in container.get("ports") or []:
            if p.get("name") == target:
                return p["containerPort"]
    return port["port"]


class Agent:
    def __init__(self, args):
        self.args = args
        self.network = Network(args.netns_prefix, args.bridge_ns, args.subnet, args.hosts_file)
        self.cloud = Cloud(args)
        self.nodes = {n.name: n for n in parse_nodes(args.nodes, args.region)}
        self.node_ports = NodePorts(args.bridge_ns, self.nodes.values())
        self.running = {}  # uid -> dict(pod, proc, netns, ip, ready)
        self.reported = set()  # uids of pods already logged as unschedulable or not ours
        self.init_retry = {}  # uid -> (failed attempts, monotonic time of the next) for init containers
        self.initializing = {}  # uid -> dict(thread, failure, proc, netns, ip, pod_dir, pod)
        self.stopping = False

    def ensure_nodes(self):
        """The Node objects, with the address in status as a kubelet reports it; each address is
        put on the bridge namespace's outside link, where the outside namespace routes to."""
        for node in self.nodes.values():
            kubectl("apply", "-f", "-", stdin=json.dumps(node.manifest()))
            if not node.address:
                continue
            status = {"status": {"addresses": [{"type": "InternalIP", "address": node.address},
                                               {"type": "Hostname", "address": node.name}]}}
            kubectl("patch", "node", node.name, "--subresource=status", "--type=merge",
                    "-p", json.dumps(status))
            sh("ip", "-n", self.args.bridge_ns, "addr", "add", f"{node.address}/32", "dev",
               self.args.lb_dev, check=False)
            log(f"node {node.name}: zone {node.zone or '-'}, address {node.address}")

    def host_ip(self, pod):
        return self.nodes[pod.obj["spec"]["nodeName"]].host_ip()

    def pods(self):
        listing = json.loads(kubectl("get", "pods", "-n", self.args.namespace, "-o", "json"))
        return [Pod(item) for item in listing["items"]]

    def broker_container(self, pod):
        containers = pod.obj["spec"]["containers"]
        for container in containers:
            if container["name"] == self.args.container:
                return container
        return containers[0] if len(containers) == 1 else None

    def bind(self, pod, pods):
        """As kube-scheduler does: a Binding to the node choose_node picks; a pod that fits no
        node stays Pending, with the scheduler's PodScheduled=False condition."""
        nodes = [n for n in json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
                 if n["metadata"]["name"] in self.nodes]
        node = choose_node(pod.obj, nodes, [p.obj for p in pods])
        if node is None:
            if pod.uid not in self.reported:
                self.reported.add(pod.uid)
                log(f"{pod.key}: no node fits (cordoned, nodeSelector or node affinity); left pending")
                body = {"status": {"conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": f"0/{len(nodes)} nodes are available",
                    "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]}}
                kubectl("patch", "pod", "-n", pod.namespace, pod.name, "--subresource=status",
                        "--type=strategic", "-p", json.dumps(body), check=False)
            return
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod.name, "namespace": pod.namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        # The pod's binding subresource, as kube-scheduler posts it: admission plugins such as
        # PodTopologyLabels act on pods/binding, not on the namespace's `bindings` resource that
        # `kubectl create` of a Binding posts to.
        kubectl("create", "--raw", f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/binding",
                "-f", "-", stdin=json.dumps(binding))
        # Counted at once, so that the next pod bound in the same pass spreads past this one.
        pod.obj["spec"]["nodeName"] = node
        self.reported.discard(pod.uid)
        log(f"{pod.key}: bound to {node}")

    def patch_status(self, pod, ip, containers_ready, ready, message="", entry=None, initialized=True):
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = "True" if ready else "False"
        entry = entry or self.running.get(pod.uid)
        body = {
            "status": {
                "phase": "Running" if initialized else "Pending",
                "hostIP": self.host_ip(pod),
                "hostIPs": [{"ip": self.host_ip(pod)}],
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "startTime": now,
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                    {"type": "Initialized", "status": "True" if initialized else "False",
                     "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True" if containers_ready else "False",
                     "lastTransitionTime": now},
                    {"type": "Ready", "status": status, "lastTransitionTime": now, "message": message},
                ],
            }
        }
        if entry is not None:
            body["status"]["containerStatuses"] = [{
                "name": entry["container"], "image": entry["image"], "imageID": "",
                "ready": containers_ready, "restartCount": entry["restarts"],
                "started": entry["proc"].poll() is None,
                "state": {"running": {"startedAt": now}} if entry["proc"].poll() is None
                else {"waiting": {"reason": "CrashLoopBackOff"}},
            }]
            if isinstance(entry.get("reported_exit"), int):
                code = entry["reported_exit"]
                body["status"]["containerStatuses"][0]["lastState"] = {"terminated": {
                    "exitCode": code, "reason": "Error" if code else "Completed",
                    "startedAt": now, "finishedAt": now}}
        kubectl("patch", "pod", "-n", pod.namespace, pod.name, "--subresource=status",
                "--type=strategic", "-p", json.dumps(body), check=False)

    def image_files(self, image):
        """The stand-in files an image needs, as (rig file, path in the container), and its
        entrypoint: apache/kafka's run script and start scripts, or the Bitnami image's entrypoint
        and the part of its script library that the Bitnami chart's init containers call."""
        if self.args.kli_binary and image.split("/")[-1].startswith("kafka-listener-injector"):
            return [], [self.args.kli_binary]
        if "bitnami/kafka" in image:
            here = os.path.dirname(os.path.abspath(__file__))
            files = [(os.path.join(here, "bitnami-run.sh"), BITNAMI_ENTRYPOINT),
                     (os.path.join(here, "bitnami-lib.sh"), "/opt/bitnami/scripts/libkafka.sh")]
            return files, [BITNAMI_ENTRYPOINT, "/opt/bitnami/scripts/kafka/run.sh"]
        # apache/kafka: its entrypoint, and the two scripts of its bin/ that charts call instead
        # (CloudPirates: kafka-storage.sh format, then exec kafka-server-start.sh).
        here = os.path.dirname(os.path.abspath(__file__))
        files = [(self.args.image_run, self.args.image_entrypoint)] + [
            (os.path.join(here, script), "/opt/kafka/bin/" + script)
            for script in ("kafka-server-start.sh", "kafka-storage.sh")]
        return files, [self.args.image_entrypoint]

    def launch_command(self, pod, container, netns, env, pod_dir):
        """The container's argv, run in the pod's network namespace and a private mount
        namespace: the image's stand-in files at their paths, each volume mount a directory of
        this pod (a subPath a file or directory in it)."""
        command = [expand(a, env) for a in container.get("command", [])]
        args = [expand(a, env) for a in container.get("args", [])]
        files, entrypoint = self.image_files(container.get("image", ""))
        argv = (command or entrypoint) + args
        mounts = list(files)
        volumes = {v["name"]: v for v in pod.obj["spec"].get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            source = os.path.join(pod_dir, "volumes", mount["name"])
            os.makedirs(source, exist_ok=True)
            fill_volume(pod.namespace, volumes.get(mount["name"], {}), source)
            if mount.get("subPath"):
                source = os.path.join(source, mount["subPath"])
                if not os.path.exists(source):
                    open(source, "w").close()
            mounts.append((source, mount["mountPath"]))
        for source, target in mounts:
            # The mount point, on the host as in an image: a file for a file, else a directory.
            if os.path.isdir(source):
                os.makedirs(target, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                if not os.path.exists(target):
                    open(target, "w").close()
        binds = " && ".join(["true"] + [f"mount --bind '{src}' '{dst}'" for src, dst in mounts])
        # Its own UTS namespace, with the pod's hostname, as the kubelet gives it (in the cluster
        # hosts file): a broker resolves the name of its host for a listener with no host.
        hostname = pod.obj["spec"].get("hostname", pod.name)
        return ["ip", "netns", "exec", netns, "unshare", "--mount", "--uts", "--propagation",
                "private", "sh", "-c", f'hostname {hostname} && {binds} && exec "$@"', "container",
                *argv]

    def container_env(self, pod, container, ip):
        env = container_env(pod, container, ip, self.host_ip(pod))
        env.update({
            "PATH": os.environ["PATH"],
            "KLI_KAFKA_LIBS": self.args.kafka_libs,
            "KLI_POD_DIR": os.path.join(self.args.work, pod.namespace, pod.name, "run"),
        })
        return env

    def run_init_containers(self, pod, state):
        """As the kubelet does before the containers: each init container in order, to its
        exit. Runs in the pod's own thread; sets state["failure"]: None when all exited 0, else
        which one failed and how. state["proc"] is the one running, for a deletion to stop."""
        try:
            self.run_init_containers_in_order(pod, state)
        except Exception as error:  # a value this kubelet cannot resolve: the pod fails, not the agent
            state["failure"] = f"init containers: {error!r}"

    def run_init_containers_in_order(self, pod, state):
        for container in pod.obj["spec"].get("initContainers", []):
            if state["aborted"]:
                state["failure"] = "the pod was deleted"
                return
            env = self.container_env(pod, container, state["ip"])
            launch = self.launch_command(pod, container, state["netns"], env, state["pod_dir"])
            with open(os.path.join(state["pod_dir"], f"init-{container['name']}.log"), "ab") as logfile:
                proc = subprocess.Popen(launch, env=env, stdout=logfile, stderr=subprocess.STDOUT,
                                        start_new_session=True)
                state["proc"] = proc
                try:
                    code = proc.wait(timeout=600)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    code = "a timeout (600 s)"
            if code != 0:
                state["failure"] = f"init container {container['name']} exited with {code}"
                return
            log(f"{pod.key}: init container {container['name']} completed")
        state["failure"] = None

    def abort_init(self, uid):
        """A pod deleted while its init containers run: the running one gets SIGTERM, then its
        namespace goes."""
        state = self.initializing.pop(uid)
        state["aborted"] = True
        proc = state.get("proc")
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        state["thread"].join(timeout=20)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        self.network.remove_pod(state["pod"].key, state["netns"])
        log(f"{state['pod'].key}: stopped while initializing")

    def start(self, pod):
        container = self.broker_container(pod)
        if container is None:
            log(f"{pod.key}: no container named {self.args.container}; left pending")
            return
        state = self.initializing.get(pod.uid)
        if state is None:
            retry_at = self.init_retry.get(pod.uid, (0, 0))[1]
            if time.monotonic() < retry_at:
                return
            spec = pod.obj["spec"]
            names = [pod.name]
            if spec.get("subdomain"):
                fqdn = f"{spec.get('hostname', pod.name)}.{spec['subdomain']}.{pod.namespace}.svc"
                names = [fqdn, f"{fqdn}.cluster.local", pod.name]
            netns, ip = self.network.add_pod(pod.key, names)
            pod_dir = os.path.join(self.args.work, pod.namespace, pod.name)
            os.makedirs(pod_dir, exist_ok=True)
            # emptyDir volumes start empty in each new pod; other volumes (a PVC's) are kept.
            for volume in spec.get("volumes", []):
                if "emptyDir" in volume:
                    shutil.rmtree(os.path.join(pod_dir, "volumes", volume["name"]), ignore_errors=True)
            state = {"pod": pod, "netns": netns, "ip": ip, "pod_dir": pod_dir, "aborted": False}
            state["thread"] = threading.Thread(target=self.run_init_containers, args=(pod, state),
                                               daemon=True)
            self.initializing[pod.uid] = state
            state["thread"].start()
            if spec.get("initContainers"):
                self.patch_status(pod, ip, False, False, "initializing", initialized=False)
            return
        if state["thread"].is_alive():
            return
        del self.initializing[pod.uid]
        netns, ip, pod_dir = state["netns"], state["ip"], state["pod_dir"]
        failure = state.get("failure", "the init containers' thread died")
        if failure is None:
            try:
                env = self.container_env(pod, container, ip)
                launch = self.launch_command(pod, container, netns, env, pod_dir)
            except Exception as error:  # a value this kubelet cannot resolve: the pod fails, not the agent
                failure = f"container {container['name']}: {error!r}"
        if failure is not None:
            # Restarted as the kubelet does (restartPolicy Always), after a doubling back-off.
            attempts = self.init_retry.get(pod.uid, (0, 0))[0] + 1
            self.init_retry[pod.uid] = (attempts, time.monotonic() + min(5 * 2 ** attempts, 60))
            self.network.remove_pod(pod.key, netns)
            log(f"{pod.key}: {failure}; retried in {min(5 * 2 ** attempts, 60)} s")
            self.patch_status(pod, ip, False, False, failure)
            return
        self.init_retry.pop(pod.uid, None)
        entry = {
            "pod": pod, "netns": netns, "ip": ip, "ready": False, "port": readiness_port(container),
            "launch": launch, "env": env, "log": os.path.join(pod_dir, "container.log"),
            "container": container["name"], "image": container.get("image", ""), "restarts": 0,
        }
        self.launch(entry)
        self.running[pod.obj["metadata"]["uid"]] = entry
        log(f"{pod.key}: started on {pod.obj['spec']['nodeName']} in {netns} with IP {ip} ({launch[launch.index('container') + 1]})")
        self.patch_status(pod, ip, False, False, "starting")

    def launch(self, entry):
        """Starts (or, after an exit, restarts) the container's process in the pod's namespaces."""
        with open(entry["log"], "ab") as logfile:
            entry["proc"] = subprocess.Popen(entry["launch"], env=entry["env"], stdout=logfile,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        entry["restart_at"] = None

    def restart_if_due(self, pod, entry, code):
        """As the kubelet does under restartPolicy Always/OnFailure: the container is started again
        in the same pod (same IP, same env), after a back-off that doubles from 5 s, at most 60 s."""
        policy = pod.obj["spec"].get("restartPolicy", "Always")
        if policy == "Never" or (policy == "OnFailure" and code == 0):
            return
        now = time.monotonic()
        if entry.get("restart_at") is None:
            entry["restart_at"] = now + min(5 * 2 ** entry["restarts"], 60)
            return
        if now < entry["restart_at"]:
            return
        entry["restarts"] += 1
        self.launch(entry)
        log(f"{pod.key}: container restarted ({entry['restarts']} restarts)")
        self.patch_status(pod, entry["ip"], False, False, "restarted", entry)

    def stop(self, uid):
        entry = self.running.pop(uid)
        proc = entry["proc"]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.network.remove_pod(entry["pod"].key, entry["netns"])
        log(f"{entry['pod'].key}: stopped")

    def port_open(self, entry):
        probe = f"exec 3<>/dev/tcp/{entry['ip']}/{entry['port']}"
        result = subprocess.run(["ip", "netns", "exec", self.args.bridge_ns, "timeout", "2",
                                 "bash", "-c", probe], capture_output=True)
        return result.returncode == 0

    def sync(self):
        seen = set()
        pods = self.pods()
        services = json.loads(kubectl("get", "services", "-n", self.args.namespace, "-o", "json"))["items"]
        # A cloud makes the load balancer whether or not the pod has started (its init
        # containers may wait for that load balancer's name).
        self.cloud.sync(services, [p for p in pods if p.uid in self.running or p.uid in self.initializing])
        self.node_ports.sync(services, [(p.obj, self.running[p.uid]["ip"]) for p in pods
                                        if p.uid in self.running and self.running[p.uid]["proc"].poll() is None])
        for pod in pods:
            uid = pod.uid
            seen.add(uid)
            meta = pod.obj["metadata"]
            if meta.get("deletionTimestamp"):
                if uid in self.running:
                    self.stop(uid)
                elif uid in self.initializing:
                    self.abort_init(uid)
                kubectl("delete", "pod", "-n", pod.namespace, pod.name, "--grace-period=0",
                        "--force", "--wait=false", check=False)
                continue
            if not pod.obj["spec"].get("nodeName"):
                self.bind(pod, pods)
                continue
            if pod.obj["spec"]["nodeName"] not in self.nodes:
                if uid not in self.reported:
                    self.reported.add(uid)
                    log(f"{pod.key}: on node {pod.obj['spec']['nodeName']}, not one of this agent's; left alone")
                continue
            if uid not in self.running:
                self.start(pod)
                continue
            entry = self.running[uid]
            code = entry["proc"].poll()
            if code is not None:
                if entry["ready"] or code != entry.get("reported_exit"):
                    log(f"{pod.key}: container exited with {code}")
                    entry["ready"] = False
                    entry["reported_exit"] = code
                    entry["reported"] = False
                    self.patch_status(pod, entry["ip"], False, False, f"exited with {code}")
                self.restart_if_due(pod, entry, code)
                continue
            if not entry["ready"] and self.port_open(entry):
                entry["ready"] = True
                log(f"{pod.key}: containers ready")
            gates = readiness_gates_met(pod.obj)
            ready = entry["ready"] and gates
            if entry["ready"] and ready != entry.get("reported"):
                entry["reported"] = ready
                log(f"{pod.key}: {'ready' if ready else 'waiting for readiness gates'}")
                self.patch_status(pod, entry["ip"], True, ready,
                                  "" if ready else "readiness gates not met")
        for uid in list(self.running):
            if uid not in seen:
                self.stop(uid)
        for uid in list(self.initializing):
            if uid not in seen:
                self.abort_init(uid)

    def run(self):
        self.ensure_nodes()
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        while not self.stopping:
            try:
                self.sync()
            except Exception as error:  # the API server may be restarting; try again
                log(f"sync: {error}")
            time.sleep(0.5)
        self.stop_all()
        self.cloud.close()
        self.node_ports.close()

    def stop_all(self, grace=10):
        """At the end of the run: every container gets SIGTERM at once, SIGKILL after `grace`."""
        for entry in self.running.values():
            if entry["proc"].poll() is None:
                os.killpg(entry["proc"].pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for entry in self.running.values():
            try:
                entry["proc"].wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(entry["proc"].pid, signal.SIGKILL)
                entry["proc"].wait()
            self.network.remove_pod(entry["pod"].key, entry["netns"])
        self.running.clear()
        for uid in list(self.initializing):
            self.abort_init(uid)


def fill_volume(namespace, volume, directory):
    """A Secret, ConfigMap or projected volume as the kubelet fills it, at each start: one file
    per key (Secret bytes decoded). Other volumes are left as they are."""
    sources = [volume] if "secret" in volume or "configMap" in volume else \
        volume.get("projected", {}).get("sources", [])
    for source in sources:
        if "secret" in source:
            ref = source["secret"]
            name = ref.get("secretName", ref.get("name"))  # a volume's, a projection's
            obj = json.loads(kubectl("get", "secret", "-n", namespace, name, "-o", "json"))
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        elif "configMap" in source:
            obj = json.loads(kubectl("get", "configmap", "-n", namespace, source["configMap"]["name"],
                                     "-o", "json"))
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        else:
            continue
        items = source.get("secret", source.get("configMap", {})).get("items")
        paths = {i["key"]: i["path"] for i in items} if items else {k: k for k in data}
        for key, path in paths.items():
            os.makedirs(os.path.dirname(os.path.join(directory, path)), exist_ok=True)
            with open(os.path.join(directory, path), "wb") as f:
                f.write(data[key])


def readiness_gates_met(pod):
    """True when every readiness gate of the pod has a condition with status True."""
    conditions = {c["type"]: c.get("status") for c in pod.get("status", {}).get("conditions") or []}
    return all(conditions.get(g["conditionType"]) == "True"
               for g in pod["spec"].get("readinessGates") or [])


def readiness_port(container):
    probe = container.get("readinessProbe", {}).get("tcpSocket", {})
    if "port" in probe:
        port = probe["port"]
        if isinstance(port, int):
            return port
        for p in container.get("ports", []):
            if p.get("name") == port:
                return p["containerPort"]
    ports = container.get("ports", [])
    return ports[0]["containerPort"] if ports else 9092


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--container", default="kafka")
    parser.add_argument("--work", required=True)
    parser.add_argument("--kafka-libs", required=True)
    parser.add_argument("--image-run", required=True)
    parser.add_argument("--image-entrypoint", default="/etc/kafka/docker/run")
    parser.add_argument("--bridge-ns", required=True)
    parser.add_argument("--netns-prefix", required=True)
    parser.add_argument("--subnet", required=True)
    parser.add_argument("--hosts-file", required=True)
    parser.add_argument("--lb-subnet", required=True)
    parser.add_argument("--lb-dev", required=True)
    parser.add_argument("--outside-hosts", required=True)
    parser.add_argument("--dns-delay-file")
    parser.add_argument("--kli-binary", help="what an image named kafka-listener-injector runs")
    parser.add_argument("--nodes", default="e2e-node",
                        help="the nodes, comma-separated name[=zone[=address]], e.g. "
                             "e2e-node-a=zone-a=10.77.3.11; a node without an address has "
                             "hostIP 127.0.0.1 and no node ports")
    parser.add_argument("--region", default="e2e-region", help="the region label of nodes with a zone")
    Agent(parser.parse_args()).run()


if __name__ == "__main__":
    main()
