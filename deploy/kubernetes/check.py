#!/usr/bin/env python3
"""Offline check of the Kubernetes manifests in deploy/kubernetes (or --dir DIR).

1. Loads every file listed in kustomization.yaml (and renders the kustomization with
   `kubectl kustomize` when kubectl is installed: it must equal the plain files).
2. Runs `kubernetes-validate --strict` against the oldest and the newest Kubernetes minor
   supported. CRD kinds (ServiceMonitor) have no schema there: they are skipped with a note
   and checked here instead; any other kind without a schema is a problem.
3. Checks that labels, selectors, ports and references line up, including the ports and
   upstreams in the TOML configs the ConfigMaps embed.

Prints one line per problem and exits 1 when there is any; 2 when it cannot run.
Needs Python 3.11+, PyYAML and kubernetes-validate (pip install pyyaml kubernetes-validate).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path


def fatal(msg: str) -> None:
    """Cannot run at all: exit 2."""
    print(f"check.py: {msg}", file=sys.stderr)
    sys.exit(2)


try:
    import yaml
except ImportError:
    fatal("needs PyYAML: python3 -m pip install pyyaml")

# Oldest minor supported: the first where the preStop `sleep` action is on by default (beta in
# 1.30; the images are bare static binaries with no `sleep` to exec).
OLDEST = "1.30"
# Custom resources kubernetes-validate has no schema for; checked below instead.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
NAMESPACE = "live"
PART_OF = "live-stack"
COMPONENTS = {"origin", "shield", "edge", "player-sim"}
IMAGES = {
    "live-stack/origin:0.1.0": "origin",
    "live-stack/edge:0.1.0": "edge",
    "live-stack/player-sim:0.1.0": "player-sim",
}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
CLUSTER_SCOPED = {"Namespace"}
REPO = Path(__file__).resolve().parents[2]

problems: list[str] = []


def problem(where: str, msg: str) -> None:
    problems.append(f"{where}: {msg}")


class Obj:
    """One manifest document and the file it came from."""

    def __init__(self, doc: dict, file: str):
        self.doc = doc
        self.file = file
        self.kind = doc.get("kind", "?")
        self.api = doc.get("apiVersion", "?")
        meta = doc.get("metadata") or {}
        self.name = meta.get("name", "?")
        self.ns = meta.get("namespace")
        self.labels = meta.get("labels") or {}
        self.spec = doc.get("spec") or {}

    @property
    def where(self) -> str:
        return f"{self.file}: {self.kind}/{self.name}"

    def pod_spec(self) -> dict | None:
        if self.kind in WORKLOADS:
            return (self.spec.get("template") or {}).get("spec") or {}
        return None

    def pod_labels(self) -> dict:
        return ((self.spec.get("template") or {}).get("metadata") or {}).get("labels") or {}


# ---------------------------------------------------------------- small helpers


def matches(selector: dict | None, labels: dict) -> bool:
    """A Service selector (a plain map) or a LabelSelector against a label set."""
    if not selector:
        return False
    if "matchLabels" in selector or "matchExpressions" in selector:
        for k, v in (selector.get("matchLabels") or {}).items():
            if labels.get(k) != v:
                return False
        for e in selector.get("matchExpressions") or []:
            k, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
            if op == "In" and labels.get(k) not in vals:
                return False
            if op == "NotIn" and k in labels and labels[k] in vals:
                return False
            if op == "Exists" and k not in labels:
                return False
            if op == "DoesNotExist" and k in labels:
                return False
        return True
    return all(labels.get(k) == v for k, v in selector.items())


def duration_s(text: str) -> float:
    """humantime-style durations: "10s", "500ms", "2m", "1m 30s"."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h)", text)
    if not parts or re.sub(r"[\d.\s]|ms|sec|min|s|m|h", "", text):
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def quantity_bytes(q) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(q))
    if not m:
        raise ValueError(f"not a memory quantity: {q!r}")
    mult = {None: 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[m.group(2)]
    return float(m.group(1)) * mult


def host_port(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def container_ports(c: dict) -> list[dict]:
    return c.get("ports") or []


def port_in(ports: list[dict], ref) -> bool:
    """Whether a port reference (name or number) names one of the container ports."""
    if isinstance(ref, str) and not ref.isdigit():
        return any(p.get("name") == ref for p in ports)
    return any(p.get("containerPort") == int(ref) for p in ports)


def env_names(c: dict) -> set[str]:
    return {e.get("name") for e in c.get("env") or []}


def flag(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def positionals(args: list[str], takes_value: set[str]) -> list[str]:
    out, skip = [], False
    for a in args[1:]:
        if skip:
            skip = False
        elif a.startswith("--"):
            skip = a in takes_value
        else:
            out.append(a)
    return out


def mount_for(path: str, c: dict) -> dict | None:
    """The volumeMount of container `c` that holds `path` (deepest mountPath first)."""
    best = None
    for m in c.get("volumeMounts") or []:
        mp = m.get("mountPath", "").rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best.get("mountPath", "")):
                best = m
    return best


def service_for_host(host: str, ns: str) -> tuple[str, str] | None:
    """(namespace, name) a cluster DNS name stands for: name, name.ns, name.ns.svc[.domain]."""
    parts = host.split(".")
    if len(parts) == 1:
        return ns, parts[0]
    if len(parts) == 2 or (len(parts) >= 3 and parts[2] == "svc"):
        return parts[1], parts[0]
    return None


# ---------------------------------------------------------------- loading


def load(dir_: Path) -> tuple[list[Obj], list[str]]:
    kfile = dir_ / "kustomization.yaml"
    if not kfile.is_file():
        fatal(f"{kfile}: not found")
    k = yaml.safe_load(kfile.read_text()) or {}
    if k.get("namespace") != NAMESPACE:
        problem("kustomization.yaml", f"namespace is {k.get('namespace')!r}, expected {NAMESPACE!r}")
    files = k.get("resources") or []
    if not files:
        problem("kustomization.yaml", "lists no resources")
    on_disk = {p.name for p in dir_.glob("*.yaml")} | {p.name for p in dir_.glob("*.yml")}
    for extra in sorted(on_disk - set(files) - {"kustomization.yaml"}):
        problem(extra, "not listed in kustomization.yaml (it would never be applied)")
    objs: list[Obj] = []
    for f in files:
        p = dir_ / f
        if not p.is_file():
            problem("kustomization.yaml", f"lists {f}, which does not exist")
            continue
        try:
            docs = [d for d in yaml.safe_load_all(p.read_text()) if d]
        except yaml.YAMLError as e:
            problem(f, f"not YAML: {e}")
            continue
        for d in docs:
            if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
                problem(f, "a document without apiVersion/kind")
                continue
            objs.append(Obj(d, f))
    return objs, files


def render(dir_: Path, objs: list[Obj]) -> None:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        print("render: kubectl not installed, `kubectl kustomize` step skipped")
        return
    r = subprocess.run([kubectl, "kustomize", str(dir_)], capture_output=True, text=True)
    if r.returncode != 0:
        problem("kustomization.yaml", f"kubectl kustomize failed: {r.stderr.strip()}")
        return
    before = len(problems)
    rendered = {(d["kind"], (d.get("metadata") or {}).get("name")): d
                for d in yaml.safe_load_all(r.stdout) if d}
    plain = {(o.kind, o.name): o for o in objs}
    for key in sorted(set(rendered) ^ set(plain)):
        problem("kustomization.yaml", f"{key[0]}/{key[1]} is in only one of the plain files "
                "and the kustomize output")
    for key, o in plain.items():
        if key in rendered and rendered[key] != o.doc:
            problem(o.where, "kubectl kustomize renders it differently from the plain file "
                    "(set metadata.namespace in the file)")
    print(f"render: kubectl kustomize: {len(rendered)} objects, "
          f"{'identical to' if len(problems) == before else 'NOT identical to'} the plain files")


# ---------------------------------------------------------------- kubernetes-validate


def schema_validate(objs: list[Obj]) -> None:
    try:
        import kubernetes_validate.utils as kvu
        from kubernetes_validate.version import __version__ as kv_version
    except ImportError:
        fatal("needs kubernetes-validate: python3 -m pip install kubernetes-validate")
    known = kvu.all_versions()
    newest = kvu.major_minor(kvu.latest_version())
    if not any(kvu.major_minor(v) == OLDEST for v in known):
        fatal(f"kubernetes-validate {kv_version} has no schemas for {OLDEST}")
    versions = [OLDEST, newest]
    core = [o for o in objs if (o.api, o.kind) not in CRD_KINDS]
    skipped = [o for o in objs if (o.api, o.kind) in CRD_KINDS]
    with tempfile.TemporaryDirectory(prefix="k8s-check-") as tmp:
        by_file: dict[str, list[dict]] = {}
        for o in core:
            by_file.setdefault(o.file, []).append(o.doc)
        paths = []
        for f, docs in by_file.items():
            p = Path(tmp) / f
            p.write_text(yaml.safe_dump_all(docs, sort_keys=False))
            paths.append(str(p))
        cmd = [sys.executable, "-m", "kubernetes_validate", "--strict"]
        for v in versions:
            cmd += ["-k", f"{v}.0"]
        r = subprocess.run(cmd + paths, capture_output=True, text=True, cwd=tmp)
    passed = set()
    for line in (r.stdout + r.stderr).splitlines():
        m = re.match(r"INFO (\S+) passed for resource (\S+) against version (\S+)", line)
        if m:
            passed.add((Path(m.group(1)).name, m.group(2), m.group(3)))
        elif line.strip():
            # ERROR (schema violation), WARN (no schema: an unknown kind or apiVersion), FATAL.
            problem("kubernetes-validate", line.strip().replace(tmp + "/", ""))
    for o in core:
        for v in versions:
            if (o.file, f"{o.kind.lower()}/{o.name}", v) not in passed:
                problem(o.where, f"did not pass kubernetes-validate --strict for Kubernetes {v}")
    print(f"kubernetes-validate {kv_version} --strict: Kubernetes {OLDEST} (oldest supported) and "
          f"{newest} (newest it knows): {len(core)} objects, "
          f"{len([1 for o in core for v in versions if (o.file, f'{o.kind.lower()}/{o.name}', v) in passed])}"
          f"/{len(core) * len(versions)} passed")
    kinds = sorted({f"{o.kind} ({o.api})" for o in skipped})
    if kinds:
        print(f"note: skipped {len(skipped)} object(s) of CRD kind {', '.join(kinds)}: "
              "kubernetes-validate has no schema for custom resources; checked below")


# ---------------------------------------------------------------- cross-reference checks


def check_labels(objs: list[Obj]) -> None:
    for o in objs:
        if o.kind not in CLUSTER_SCOPED and o.ns != NAMESPACE:
            problem(o.where, f"metadata.namespace is {o.ns!r}, expected {NAMESPACE!r}")
        if o.kind in CLUSTER_SCOPED:
            continue
        sets = [("metadata.labels", o.labels)]
        if o.kind in WORKLOADS:
            sets.append(("pod template labels", o.pod_labels()))
        for what, labels in sets:
            for k in ("app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/part-of"):
                if k not in labels:
                    problem(o.where, f"{what} lack {k}")
            comp = labels.get("app.kubernetes.io/component")
            if comp is not None and comp not in COMPONENTS:
                problem(o.where, f"{what}: component {comp!r} is not one of {sorted(COMPONENTS)}")
            if labels.get("app.kubernetes.io/part-of", PART_OF) != PART_OF:
                problem(o.where, f"{what}: app.kubernetes.io/part-of is not {PART_OF!r}")
        if o.kind in WORKLOADS:
            for k in ("app.kubernetes.io/name", "app.kubernetes.io/component"):
                if o.labels.get(k) != o.pod_labels().get(k):
                    problem(o.where, f"{k} differs between the object and its pod template")
            sel = o.spec.get("selector")
            if o.kind != "Job" and not matches(sel, o.pod_labels()):
                problem(o.where, f"spec.selector {sel} does not match its own pod template labels")
    seen = set()
    for o in objs:
        key = (o.kind, o.ns, o.name)
        if key in seen:
            problem(o.where, "defined twice")
        seen.add(key)


def check_services(objs: list[Obj], workloads: list[Obj]) -> None:
    for s in (o for o in objs if o.kind == "Service"):
        sel = s.spec.get("selector")
        if not sel:
            problem(s.where, "has no selector")
            continue
        pods = [w for w in workloads if w.ns == s.ns and matches(sel, w.pod_labels())]
        if not pods:
            problem(s.where, f"selector {sel} matches no workload's pod template labels")
            continue
        for p in s.spec.get("ports") or []:
            target = p.get("targetPort", p.get("port"))
            if "name" not in p and len(s.spec.get("ports")) > 1:
                problem(s.where, f"port {p.get('port')} has no name")
            for w in pods:
                cports = [cp for c in w.pod_spec().get("containers") or [] for cp in container_ports(c)]
                if not port_in(cports, target):
                    problem(s.where, f"port {p.get('name', p.get('port'))}: targetPort {target!r} "
                            f"is not a containerPort of {w.kind}/{w.name}'s pods")


def check_pods(objs: list[Obj], workloads: list[Obj], by_kind: dict) -> None:
    for w in workloads:
        ps = w.pod_spec()
        vols = {v.get("name"): v for v in ps.get("volumes") or []}
        for v in vols.values():
            ref = None
            if "configMap" in v:
                ref = ("ConfigMap", v["configMap"].get("name"), v["configMap"])
            elif "secret" in v:
                ref = ("Secret", v["secret"].get("secretName"), v["secret"])
            elif "persistentVolumeClaim" in v:
                ref = ("PersistentVolumeClaim", v["persistentVolumeClaim"].get("claimName"), {})
            if ref:
                kind, name, src = ref
                target = by_kind.get((kind, name))
                if target is None and not src.get("optional"):
                    problem(w.where, f"volume {v.get('name')}: {kind} {name!r} does not exist")
                elif target is not None:
                    keys = data_keys(target)
                    for item in src.get("items") or []:
                        if item.get("key") not in keys:
                            problem(w.where, f"volume {v.get('name')}: {kind} {name} has no key {item.get('key')!r}")
        containers = (ps.get("initContainers") or []) + (ps.get("containers") or [])
        for c in containers:
            cw = f"{w.where}: container {c.get('name')}"
            for m in c.get("volumeMounts") or []:
                if m.get("name") not in vols:
                    problem(cw, f"volumeMount {m.get('name')!r} names no volume")
            for e in c.get("env") or []:
                vf = e.get("valueFrom") or {}
                for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                    if key in vf:
                        ref = vf[key]
                        target = by_kind.get((kind, ref.get("name")))
                        if target is None:
                            if not ref.get("optional"):
                                problem(cw, f"env {e.get('name')}: {kind} {ref.get('name')!r} does not exist")
                        elif ref.get("key") not in data_keys(target):
                            problem(cw, f"env {e.get('name')}: {kind} {ref.get('name')} has no key {ref.get('key')!r}")
            for ef in c.get("envFrom") or []:
                for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if key in ef and (kind, ef[key].get("name")) not in by_kind and not ef[key].get("optional"):
                        problem(cw, f"envFrom: {kind} {ef[key].get('name')!r} does not exist")
            for a in (c.get("command") or []) + (c.get("args") or []):
                for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(a)):
                    if var not in env_names(c):
                        problem(cw, f"$({var}) in its arguments is not defined in env (it would not expand)")
            ports = container_ports(c)
            for pk in ("livenessProbe", "readinessProbe", "startupProbe"):
                probe = c.get(pk)
                if probe:
                    h = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc") or {}
                    if "port" in h and not port_in(ports, h["port"]):
                        problem(cw, f"{pk} port {h['port']!r} is not one of its containerPorts")
            if w.kind in {"Deployment", "StatefulSet", "DaemonSet"}:
                for pk, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                    got = ((c.get(pk) or {}).get("httpGet") or {}).get("path")
                    if got != path:
                        problem(cw, f"{pk} must be GET {path} (has {got!r})")
            check_container_policy(cw, w, c)


def data_keys(o: Obj) -> set[str]:
    return set((o.doc.get("data") or {}).keys()) | set((o.doc.get("stringData") or {}).keys()) \
        | set((o.doc.get("binaryData") or {}).keys())


def check_container_policy(cw: str, w: Obj, c: dict) -> None:
    image = c.get("image")
    if image not in IMAGES:
        problem(cw, f"image {image!r} is not one of {sorted(IMAGES)}")
    if c.get("imagePullPolicy") != "IfNotPresent":
        problem(cw, "imagePullPolicy must be IfNotPresent")
    psc = w.pod_spec().get("securityContext") or {}
    sc = c.get("securityContext") or {}
    if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot"))):
        problem(cw, "runAsNonRoot is not set")
    if sc.get("runAsUser", psc.get("runAsUser")) == 0:
        problem(cw, "runs as user 0")
    if sc.get("readOnlyRootFilesystem") is not True:
        problem(cw, "readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problem(cw, "allowPrivilegeEscalation is not false")
    res = c.get("resources") or {}
    for part in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in (res.get(part) or {}):
                problem(cw, f"resources.{part}.{r} is not set")


def check_statefulsets(objs: list[Obj], services: dict) -> None:
    for s in (o for o in objs if o.kind == "StatefulSet"):
        name = s.spec.get("serviceName")
        svc = services.get((s.ns, name))
        if svc is None:
            problem(s.where, f"serviceName {name!r} names no Service")
        elif svc.spec.get("clusterIP") != "None":
            problem(s.where, f"serviceName {name!r} is not a headless Service (clusterIP: None)")
        elif not matches(svc.spec.get("selector"), s.pod_labels()):
            problem(s.where, f"its governing Service {name} does not select its pods")


def check_hpas_pdbs(objs: list[Obj], workloads: list[Obj]) -> None:
    readme = (REPO / "README.md")
    exported = set(re.findall(r"\b((?:edge|origin)_[a-z_]+)\b", readme.read_text())) if readme.is_file() else None
    for h in (o for o in objs if o.kind == "HorizontalPodAutoscaler"):
        ref = h.spec.get("scaleTargetRef") or {}
        target = next((w for w in workloads if w.kind == ref.get("kind") and w.name == ref.get("name")
                       and w.ns == h.ns), None)
        if target is None:
            problem(h.where, f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} does not exist")
            continue
        if ref.get("apiVersion") != target.api:
            problem(h.where, f"scaleTargetRef apiVersion {ref.get('apiVersion')!r} is not {target.api!r}")
        if h.spec.get("minReplicas", 1) > h.spec.get("maxReplicas", 0):
            problem(h.where, "minReplicas exceeds maxReplicas")
        if "replicas" in target.spec:
            problem(h.where, f"{target.kind}/{target.name} sets spec.replicas, which fights the autoscaler on every apply")
        programs = {IMAGES.get(c.get("image")) for c in target.pod_spec().get("containers") or []}
        for m in h.spec.get("metrics") or []:
            if m.get("type") == "Pods":
                name = ((m.get("pods") or {}).get("metric") or {}).get("name", "")
                if not any(name.startswith(f"{p}_") for p in programs if p):
                    problem(h.where, f"Pods metric {name!r} is not one of {sorted(p for p in programs if p)}'s metrics")
                elif exported is not None and name not in exported:
                    problem(h.where, f"Pods metric {name!r} is not among the metrics README.md documents")
            if m.get("type") == "Resource":
                r = (m.get("resource") or {}).get("name")
                for c in target.pod_spec().get("containers") or []:
                    if r not in ((c.get("resources") or {}).get("requests") or {}):
                        problem(h.where, f"Resource metric {r}: container {c.get('name')} requests no {r}")
    for p in (o for o in objs if o.kind == "PodDisruptionBudget"):
        sel = p.spec.get("selector")
        hits = [w for w in workloads if w.ns == p.ns and matches(sel, w.pod_labels())]
        if not hits:
            problem(p.where, f"selector {sel} matches no workload's pod template labels")
        elif len(hits) > 1:
            problem(p.where, f"selector matches several workloads: {[f'{w.kind}/{w.name}' for w in hits]}")
        if ("minAvailable" in p.spec) == ("maxUnavailable" in p.spec):
            problem(p.where, "needs exactly one of minAvailable and maxUnavailable")


def check_servicemonitors(objs: list[Obj]) -> None:
    services = [o for o in objs if o.kind == "Service"]
    for m in (o for o in objs if o.kind == "ServiceMonitor"):
        nsel = m.spec.get("namespaceSelector") or {}
        namespaces = None if nsel.get("any") else set(nsel.get("matchNames") or [m.ns])
        sel = m.spec.get("selector")
        hits = [s for s in services if (namespaces is None or s.ns in namespaces) and matches(sel, s.labels)]
        if not hits:
            problem(m.where, f"selector {sel} selects no Service")
            continue
        if len(hits) > 1:
            problem(m.where, f"selector selects {len(hits)} Services "
                    f"({', '.join(s.name for s in hits)}): their pods would be scraped more than once")
        endpoints = m.spec.get("endpoints") or []
        if not endpoints:
            problem(m.where, "has no endpoints")
        for e in endpoints:
            for s in hits:
                names = {p.get("name") for p in s.spec.get("ports") or []}
                if e.get("port") not in names:
                    problem(m.where, f"endpoint port {e.get('port')!r} is not a port name of Service/{s.name} "
                            f"({sorted(n for n in names if n)})")


# ---------------------------------------------------------------- programs and their configs


def toml_of(w: Obj, c: dict, by_kind: dict) -> tuple[str, dict] | None:
    """The config file a container is started with (`--config PATH`), from its ConfigMap."""
    args = c.get("args") or []
    path = flag(args, "--config")
    cw = f"{w.where}: container {c.get('name')}"
    if path is None:
        return None
    m = mount_for(path, c)
    if m is None:
        problem(cw, f"--config {path} is on no volumeMount")
        return None
    vol = next((v for v in w.pod_spec().get("volumes") or [] if v.get("name") == m.get("name")), None)
    if not vol or "configMap" not in vol:
        problem(cw, f"--config {path}: volume {m.get('name')!r} is not a ConfigMap")
        return None
    cm = by_kind.get(("ConfigMap", vol["configMap"].get("name")))
    if cm is None:
        return None  # reported with the volumes
    rel = m.get("subPath") or os.path.relpath(path, m["mountPath"])
    key = rel
    for item in vol["configMap"].get("items") or []:
        if item.get("path") == rel:
            key = item.get("key")
    text = (cm.doc.get("data") or {}).get(key)
    if text is None:
        problem(cw, f"--config {path}: ConfigMap {cm.name} has no key {key!r}")
        return None
    try:
        return f"{cm.file}: ConfigMap/{cm.name} {key}", tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        problem(f"{cm.file}: ConfigMap/{cm.name}", f"{key} is not TOML: {e}")
        return None


def check_programs(workloads: list[Obj], by_kind: dict, services: dict) -> None:
    run_jobs = {}
    for w in workloads:
        ps = w.pod_spec()
        for c in ps.get("containers") or []:
            program = IMAGES.get(c.get("image"))
            cw = f"{w.where}: container {c.get('name')}"
            if program in ("origin", "edge"):
                loaded = toml_of(w, c, by_kind)
                if loaded is None:
                    problem(cw, "runs without --config from a ConfigMap")
                    continue
                check_server_config(w, c, program, *loaded, services)
            elif program == "player-sim":
                args = c.get("args") or []
                if args[:1] == ["run"]:
                    check_player_run(w, c, cw, services)
                    run_jobs[w.name] = (w, c)
                elif args[:1] == ["merge"]:
                    check_player_merge(w, c, cw)
    # The merge reads exactly the reports the indexed run writes.
    for w in workloads:
        for c in w.pod_spec().get("containers") or []:
            args = c.get("args") or []
            if IMAGES.get(c.get("image")) != "player-sim" or args[:1] != ["merge"]:
                continue
            cw = f"{w.where}: container {c.get('name')}"
            inputs = positionals(args, {"--out"})
            indexed = [(rw, rc) for rw, rc in run_jobs.values() if rw.spec.get("completionMode") == "Indexed"]
            if not indexed:
                problem(cw, "there is no Indexed player-sim run Job whose reports it could merge")
                continue
            rw, rc = indexed[0]
            out = flag(rc.get("args") or [], "--out") or ""
            expected = [out.replace("$(JOB_COMPLETION_INDEX)", str(i)) for i in range(rw.spec.get("completions", 1))]
            if sorted(inputs) != sorted(expected):
                problem(cw, f"merges {inputs}, but Job/{rw.name} writes {expected}")
            if not claims(w, c) & claims(rw, rc):
                problem(cw, f"mounts no PersistentVolumeClaim that Job/{rw.name} writes to")


def claims(w: Obj, c: dict) -> set[str]:
    """The PersistentVolumeClaims container `c` of `w` mounts."""
    mounted = {m.get("name") for m in c.get("volumeMounts") or []}
    return {v["persistentVolumeClaim"].get("claimName") for v in w.pod_spec().get("volumes") or []
            if "persistentVolumeClaim" in v and v.get("name") in mounted}


def check_server_config(w: Obj, c: dict, program: str, src: str, cfg: dict, services: dict) -> None:
    cw = f"{w.where}: container {c.get('name')}"
    want: dict[tuple[int, str], str] = {}
    listen = cfg.get("listen", "127.0.0.1:8080" if program == "origin" else "127.0.0.1:8081")
    addrs = [("listen", listen)]
    if program == "edge":
        addrs.append(("admin.listen", (cfg.get("admin") or {}).get("listen", "127.0.0.1:9081")))
        addrs += [(f"listeners[{i}].addr", l.get("addr", "")) for i, l in enumerate(cfg.get("listeners") or [])]
    for key, addr in addrs:
        try:
            host, port = host_port(addr)
        except ValueError:
            problem(src, f"{key} {addr!r} is not host:port")
            continue
        if host not in ("0.0.0.0", "::"):
            problem(src, f"{key} = {addr!r}: a pod must listen on 0.0.0.0 (probes and Services cannot reach {host})")
        want[(port, "TCP")] = key
    if program == "origin":
        for s in cfg.get("streams") or []:
            for r in s.get("renditions") or []:
                if r.get("udp"):
                    want[(host_port(r["udp"])[1], "UDP")] = f"streams.{s.get('name')}.{r.get('name')}.udp"
    have = {(p.get("containerPort"), p.get("protocol", "TCP")): p.get("name") for p in container_ports(c)}
    for (port, proto), key in want.items():
        if (port, proto) not in have:
            problem(cw, f"{src} {key} uses port {port}/{proto}, which is not a containerPort")
    for (port, proto), name in have.items():
        if (port, proto) not in want:
            problem(cw, f"containerPort {name or ''} {port}/{proto} is not a port in {src}")
    # SIGTERM drains for server.drain_timeout; the pod must be given longer, preStop included.
    drain = duration_s((cfg.get("server") or {}).get("drain_timeout", "10s"))
    pre = ((((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0))
    grace = w.pod_spec().get("terminationGracePeriodSeconds", 30)
    if grace <= drain + pre:
        problem(cw, f"terminationGracePeriodSeconds {grace} is not longer than the preStop sleep ({pre} s) "
                f"plus server.drain_timeout ({drain:g} s) in {src}")
    if program != "edge":
        return
    admin = cfg.get("admin") or {}
    if "token_env" in admin:
        e = next((e for e in c.get("env") or [] if e.get("name") == admin["token_env"]), None)
        if e is None:
            problem(cw, f"{src} admin.token_env = {admin['token_env']!r}, but the container has no such env")
        elif "secretKeyRef" not in (e.get("valueFrom") or {}):
            problem(cw, f"env {admin['token_env']} (the admin token) is not taken from a Secret")
    up = cfg.get("upstream") or {}
    for url in up.get("urls") or []:
        m = re.fullmatch(r"(https?)://([^/:]+)(?::(\d+))?(/.*)?", url)
        if not m:
            problem(src, f"upstream.urls: {url!r} is not http(s)://host:port")
            continue
        port = int(m.group(3) or (443 if m.group(1) == "https" else 80))
        ref = service_for_host(m.group(2), w.ns)
        svc = services.get(ref) if ref else None
        if svc is None:
            problem(src, f"upstream {url}: no Service {m.group(2)!r} in the manifests")
            continue
        if port not in {p.get("port") for p in svc.spec.get("ports") or []}:
            problem(src, f"upstream {url}: Service/{svc.name} has no port {port}")
        headless = svc.spec.get("clusterIP") == "None"
        if headless and "resolve_interval" not in up:
            problem(src, f"upstream {url} is the headless Service {svc.name}: set upstream.resolve_interval "
                    "so its addresses (the pool) are re-resolved")
        if up.get("pick") == "hashed" and not headless:
            problem(src, f"upstream.pick = \"hashed\" over Service/{svc.name}, which has one virtual IP "
                    "(a pool needs a headless Service)")
    cap = (cfg.get("cache") or {}).get("capacity_bytes", 536870912)
    limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
    if limit is not None and cap > quantity_bytes(limit) / 2:
        problem(cw, f"{src} cache.capacity_bytes {cap} is more than half the memory limit {limit} "
                "(connections, buffers and bodies in flight need the rest)")


def check_player_run(w: Obj, c: dict, cw: str, services: dict) -> None:
    args = c.get("args") or []
    url = flag(args, "--url")
    m = re.fullmatch(r"https?://([^/:]+)(?::(\d+))?(/.*)?", url or "")
    if not m:
        problem(cw, f"--url {url!r} is not an http URL")
    else:
        ref = service_for_host(m.group(1), w.ns)
        svc = services.get(ref) if ref else None
        port = int(m.group(2) or 80)
        if svc is None:
            problem(cw, f"--url {url}: no Service {m.group(1)!r} in the manifests")
        elif port not in {p.get("port") for p in svc.spec.get("ports") or []}:
            problem(cw, f"--url {url}: Service/{svc.name} has no port {port}")
    ml = flag(args, "--metrics-listen")
    if ml:
        host, port = host_port(ml)
        if host not in ("0.0.0.0", "::"):
            problem(cw, f"--metrics-listen {ml}: must listen on 0.0.0.0 to be scraped")
        if not port_in(container_ports(c), port):
            problem(cw, f"--metrics-listen port {port} is not a containerPort")
    if w.kind == "Job" and w.spec.get("completionMode") == "Indexed":
        for f in ("--seed", "--out", "--out-dir"):
            if "$(JOB_COMPLETION_INDEX)" not in (flag(args, f) or ""):
                problem(cw, f"{f} does not contain $(JOB_COMPLETION_INDEX): every index must differ")
    for f in ("--out", "--out-dir"):
        check_writable(w, c, cw, f, flag(args, f))
    if flag(args, "--out-dir") is None:
        problem(cw, "no --out-dir: sessions.csv and the plots go to ./player-sim-out on the read-only root")


def check_player_merge(w: Obj, c: dict, cw: str) -> None:
    args = c.get("args") or []
    check_writable(w, c, cw, "--out", flag(args, "--out"))
    for p in positionals(args, {"--out"}):
        if any(ch in p for ch in "*?["):
            problem(cw, f"{p}: a glob, which no shell expands in this image; list the files")
        if mount_for(p, c) is None:
            problem(cw, f"{p} is on no volumeMount")


def check_writable(w: Obj, c: dict, cw: str, f: str, path: str | None) -> None:
    if path is None:
        return
    m = mount_for(path, c)
    vol = m and next((v for v in w.pod_spec().get("volumes") or [] if v.get("name") == m.get("name")), None)
    if not m or m.get("readOnly") or not vol or not ({"persistentVolumeClaim", "emptyDir"} & set(vol)):
        problem(cw, f"{f} {path} is not on a writable volume (the root filesystem is read-only)")


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent,
                    help="folder with kustomization.yaml (default: this script's folder)")
    a = ap.parse_args()
    objs, files = load(a.dir)
    print(f"check.py: {a.dir}: {len(files)} files, {len(objs)} objects")
    render(a.dir, objs)
    schema_validate(objs)
    by_kind = {(o.kind, o.name): o for o in objs}
    services = {(o.ns, o.name): o for o in objs if o.kind == "Service"}
    workloads = [o for o in objs if o.kind in WORKLOADS]
    before = len(problems)
    check_labels(objs)
    check_services(objs, workloads)
    check_pods(objs, workloads, by_kind)
    check_statefulsets(objs, services)
    check_hpas_pdbs(objs, workloads)
    check_servicemonitors(objs)
    check_programs(workloads, by_kind, services)
    print(f"labels, selectors, ports, references, embedded configs: "
          f"{'ok' if len(problems) == before else f'{len(problems) - before} problem(s)'}")
    for p in problems:
        print(f"PROBLEM {p}")
    if problems:
        print(f"FAILED: {len(problems)} problem(s)")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
