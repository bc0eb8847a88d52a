"""deploy/k8s renders, validates against the Kubernetes schemas, and keeps the deployment rules.

Every overlay is rendered with `kubectl kustomize` and each object validated (strict) with
`kubernetes-validate` against the schemas of KUBERNETES_VERSION, which the package ships
(offline). Custom resources (the Milvus Operator's Milvus, the Prometheus Operator's
ServiceMonitor) have no schema there and are checked by the policy tests instead.
"""

from __future__ import annotations

import importlib

import kubernetes_validate
import pytest

from kinship.runtime import config
from kinship.v1 import embedder_pb2, indexer_pb2, ranker_pb2
from tests.manifests import OVERLAYS, SERVICES, container, container_env, deployment, of_kind, render

KUBERNETES_VERSION = "1.33.0"
CUSTOM_RESOURCES = {("milvus.io/v1beta1", "Milvus"), ("monitoring.coreos.com/v1", "ServiceMonitor")}
PORTS = {"embedder": 50051, "indexer": 50052, "ranker": 50053}
METRICS_PORT = 9090
MILVUS_PORT = 19530


def bootstrap(service: str):
    return importlib.import_module(f"kinship.{service}.bootstrap")


GRPC_SERVICE_NAMES = {
    "embedder": embedder_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name,
    "indexer": indexer_pb2.DESCRIPTOR.services_by_name["Indexer"].full_name,
    "ranker": ranker_pb2.DESCRIPTOR.services_by_name["KinshipRanker"].full_name,
}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


def test_every_object_validates_against_the_kubernetes_schemas(overlay) -> None:
    name, docs = overlay
    problems, custom = [], set()
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_RESOURCES:
            custom.add(doc["kind"])
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(
                f"{doc['kind']}/{doc['metadata']['name']}: no schema for {doc['apiVersion']} in {KUBERNETES_VERSION}"
            )
    assert not problems, f"overlays/{name} does not validate:\n" + "\n".join(problems)
    assert "Milvus" in custom, "every overlay brings a Milvus server"


def test_one_of_each_kind_per_service(overlay) -> None:
    _, docs = overlay
    for kind in ("Deployment", "Service", "ServiceAccount", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert set(of_kind(docs, kind)) >= {f"kinship-{s}" for s in SERVICES}, f"every service needs a {kind}"
    for service in SERVICES:
        dep = deployment(docs, service)
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        hpa = of_kind(docs, "HorizontalPodAutoscaler")[f"kinship-{service}"]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": f"kinship-{service}",
        }
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        assert hpa["spec"]["metrics"], "the HPA must scale on something"
        pdb = of_kind(docs, "PodDisruptionBudget")[f"kinship-{service}"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(), "the PDB must select the pods"
        svc = of_kind(docs, "Service")[f"kinship-{service}"]
        assert svc["spec"]["clusterIP"] == "None", "headless: the clients balance over every pod"
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        spec = dep["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == f"kinship-{service}"
        assert spec["automountServiceAccountToken"] is False
        config_maps = [s["configMapRef"]["name"] for s in container(docs, service)["envFrom"]]
        assert all(name in of_kind(docs, "ConfigMap") for name in config_maps)


def test_replicas_per_overlay(overlay) -> None:
    name, docs = overlay
    for service in SERVICES:
        replicas = deployment(docs, service)["spec"]["replicas"]
        low = of_kind(docs, "HorizontalPodAutoscaler")[f"kinship-{service}"]["spec"]["minReplicas"]
        if name == "dev":
            assert replicas == 1 and low == 1, f"dev runs one {service}"
        else:
            assert replicas >= 2 and low >= 2, f"prod runs at least two of the {service}"


def test_pods_are_hardened_and_sized(overlay) -> None:
    _, docs = overlay
    for service in SERVICES:
        spec = deployment(docs, service)["spec"]["template"]["spec"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, f"{service}/{c['name']}"
            assert sc["readOnlyRootFilesystem"] is True, f"{service}/{c['name']}"
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
            assert not sc.get("privileged")
            for bound in ("requests", "limits"):
                assert set(c["resources"][bound]) >= {"cpu", "memory"}, f"{service} needs {bound} for cpu and memory"
        volumes = {v["name"]: v for v in spec["volumes"]}
        (main,) = spec["containers"]
        writable = [m for m in main["volumeMounts"] if not m.get("readOnly")]
        assert writable, "with a read-only root the service needs somewhere to write"
        assert all("emptyDir" in volumes[m["name"]] for m in writable), "writable mounts are scratch emptyDirs only"
        spread = {t["topologyKey"] for t in spec["topologySpreadConstraints"]}
        assert spread == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}


def test_probes_and_rollouts(overlay) -> None:
    name, docs = overlay
    for service in SERVICES:
        dep = deployment(docs, service)
        spec = dep["spec"]["template"]["spec"]
        c = container(docs, service)
        env = container_env(docs, service)
        probe_port = int(env[f"KINSHIP_{service.upper()}_HEALTH_PORT"]) if name == "prod" else PORTS[service]
        service_name = GRPC_SERVICE_NAMES[service]
        assert c["readinessProbe"]["grpc"] == {"port": probe_port, "service": service_name}, (
            "readiness per service name"
        )
        assert c["livenessProbe"]["grpc"] == {"port": probe_port}, "liveness checks the process only"
        assert c["startupProbe"]["grpc"] == {"port": probe_port}
        startup = c["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "model loading may take minutes"
        assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert dep["spec"]["minReadySeconds"] > 0
        drain = float(env["KINSHIP_GRACE_SECONDS"])
        assert spec["terminationGracePeriodSeconds"] > drain, "the pod must outlive the drain"
        assert c["args"] == ["serve", service]


def test_ports_and_settings_agree_with_the_code(overlay) -> None:
    _, docs = overlay
    services = of_kind(docs, "Service")
    for service in SERVICES:
        module = bootstrap(service)
        assert module.DEFAULT_PORT == PORTS[service]
        env = container_env(docs, service)
        known = {s.env for s in module.settings()}
        unknown = sorted(set(env) - known)
        assert not unknown, f"{service} is given variables it does not read: {unknown}"
        assert env["KINSHIP_HOST"] == "[::]", "pods listen on every address"
        assert int(env[f"KINSHIP_{service.upper()}_PORT"]) == PORTS[service]
        assert int(env[f"KINSHIP_{service.upper()}_METRICS_PORT"]) == METRICS_PORT
        ports = {p["name"]: p["containerPort"] for p in container(docs, service)["ports"]}
        assert ports["grpc"] == PORTS[service] and ports["metrics"] == METRICS_PORT
        svc_ports = {p["name"]: p["port"] for p in services[f"kinship-{service}"]["spec"]["ports"]}
        assert svc_ports == {"grpc": PORTS[service], "metrics": METRICS_PORT}
        # Every value the manifests give passes the service's own checks (ConfigError otherwise).
        # KINSHIP_TLS_DIR and KINSHIP_AUDIT_KEY_FILE name Secrets' mounts, which exist only in the pod: their
        # files are checked there.
        in_pod = ("KINSHIP_TLS_DIR", "KINSHIP_AUDIT_KEY_FILE")
        plain = {k: v for k, v in env.items() if isinstance(v, str) and k not in in_pod}
        config.resolve(module.settings(), env=plain)
    ranker = container_env(docs, "ranker")
    for dependency in ("embedder", "indexer"):
        address = ranker[f"KINSHIP_{dependency.upper()}_ADDRESS"]
        assert address == f"dns:///kinship-{dependency}:{PORTS[dependency]}", "dns:/// over the headless Service"


def test_connection_age_and_keepalive_agree(overlay) -> None:
    _, docs = overlay
    envs = {s: container_env(docs, s) for s in SERVICES}
    for service, env in envs.items():
        assert float(env["KINSHIP_MAX_CONNECTION_AGE_SECONDS"]) > 0, f"{service}: new pods would get no calls"
    # A bulk enrolment of a million rows streams for minutes; the age's grace must not cut it.
    assert float(envs["indexer"]["KINSHIP_MAX_CONNECTION_AGE_GRACE_SECONDS"]) >= 3600
    # The ranker pings the embedder and indexer no faster than they allow.
    for dependency in ("embedder", "indexer"):
        assert float(envs["ranker"]["KINSHIP_KEEPALIVE_SECONDS"]) >= float(
            envs[dependency]["KINSHIP_MIN_PING_INTERVAL_SECONDS"]
        )


def test_labels(overlay) -> None:
    _, docs = overlay
    ours = [d for d in docs if (d["apiVersion"], d["kind"]) not in CUSTOM_RESOURCES and d["kind"] != "NetworkPolicy"]
    for doc in ours:
        labels = doc["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/part-of", "app.kubernetes.io/version", "app.kubernetes.io/managed-by"):
            assert key in labels, f"{doc['kind']}/{doc['metadata']['name']} lacks {key}"
    for service in SERVICES:
        dep = deployment(docs, service)
        for labels in (dep["metadata"]["labels"], dep["spec"]["template"]["metadata"]["labels"]):
            assert labels["app.kubernetes.io/name"] == f"kinship-{service}"
            assert labels["app.kubernetes.io/component"] == service
            assert labels["app.kubernetes.io/part-of"] == "kinship-search"


def test_the_indexer_keeps_the_gallery_in_a_milvus_server(overlay) -> None:
    name, docs = overlay
    env = container_env(docs, "indexer")
    uri = env["KINSHIP_MILVUS_URI"]
    assert isinstance(uri, dict) and uri["secret"].startswith("kinship-milvus"), "the Milvus URI comes from a Secret"
    assert isinstance(env["KINSHIP_MILVUS_TOKEN"], dict), "credentials come from the Secret too"
    (milvus,) = of_kind(docs, "Milvus").values()
    if name == "dev":
        assert milvus["spec"]["mode"] == "standalone"
        assert uri["generated"] and not uri["optional"]
    else:
        assert milvus["spec"]["mode"] == "cluster"
        assert milvus["spec"]["config"]["common"]["security"]["authorizationEnabled"] is True
        assert not uri["generated"], "prod credentials are made outside git (docs/deploy.md)"
        assert not uri["optional"], "prod refuses to start without a Milvus server"


def test_security_settings_per_overlay(overlay) -> None:
    name, docs = overlay
    for service in SERVICES:
        env = container_env(docs, service)
        spec = deployment(docs, service)["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m for m in container(docs, service)["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        if name == "dev":
            assert env.get("KINSHIP_PLAINTEXT") == "true", "dev chooses plaintext explicitly"
            assert "KINSHIP_TLS_DIR" not in env
            assert "KINSHIP_AUDIT_KEY_FILE" not in env
        else:
            assert "KINSHIP_PLAINTEXT" not in env, "prod is secure by default"
            assert env["KINSHIP_TLS_DIR"] == "/etc/kinship/tls"
            mount = mounts["/etc/kinship/tls"]
            assert mount["readOnly"] is True
            assert volumes[mount["name"]]["secret"]["secretName"] == "kinship-tls"
            health = int(env[f"KINSHIP_{service.upper()}_HEALTH_PORT"])
            assert health not in (PORTS[service], METRICS_PORT)
            # Signed audit checkpoints, with the private key from its own Secret, read-only.
            key_file = env["KINSHIP_AUDIT_KEY_FILE"]
            key_mount = mounts[key_file.rsplit("/", 1)[0]]
            assert key_mount["readOnly"] is True
            key_volume = volumes[key_mount["name"]]["secret"]
            assert key_volume["secretName"] == "kinship-audit-key"
            assert [item["path"] for item in key_volume["items"]] == [key_file.rsplit("/", 1)[1]]


# NetworkPolicy, evaluated as the API defines it (pod and namespace selectors by matchLabels).


def _matches(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, "these tests read matchLabels only"
    return selector.get("matchLabels", {}).items() <= labels.items()


def _peer_matches(peer: dict, policy_ns: str, pod: dict) -> bool:
    if "ipBlock" in peer:
        return False
    ns_ok = (
        _matches(peer["namespaceSelector"], pod["ns_labels"]) if "namespaceSelector" in peer else pod["ns"] == policy_ns
    )
    return ns_ok and _matches(peer.get("podSelector", {}), pod["labels"])


def _side_allows(policies, direction: str, subject: dict, peer: dict, port: int) -> bool:
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == subject["ns"]
        and direction in p["spec"]["policyTypes"]
        and _matches(p["spec"]["podSelector"], subject["labels"])
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peers_ok = not rule.get(peers_key) or any(
                _peer_matches(x, policy["metadata"]["namespace"], peer) for x in rule[peers_key]
            )
            ports_ok = not rule.get("ports") or any(p["port"] == port for p in rule["ports"])
            if peers_ok and ports_ok:
                return True
    return False


def _pod(ns: str, **labels: str) -> dict:
    return {"ns": ns, "ns_labels": {"kubernetes.io/metadata.name": ns}, "labels": labels}


def test_network_policies_allow_only_the_declared_paths(overlay) -> None:
    _, docs = overlay
    policies = list(of_kind(docs, "NetworkPolicy").values())
    ns = deployment(docs, "ranker")["metadata"]["namespace"]
    pods = {s: _pod(ns, **deployment(docs, s)["spec"]["template"]["metadata"]["labels"]) for s in SERVICES}
    pods["milvus"] = _pod(ns, **{"app.kubernetes.io/instance": "kinship-milvus", "app.kubernetes.io/name": "milvus"})
    pods["client"] = _pod("casework", **{"kinship-search.io/client": "true"})
    pods["enroller"] = _pod("registry", **{"kinship-search.io/enroller": "true"})
    pods["prometheus"] = _pod("monitoring", **{"app.kubernetes.io/name": "prometheus"})
    pods["stranger"] = _pod(ns, app="something-else")
    pods["dns"] = _pod("kube-system", **{"k8s-app": "kube-dns"})

    def allowed(src: str, dst: str, port: int) -> bool:
        return _side_allows(policies, "Egress", pods[src], pods[dst], port) and _side_allows(
            policies, "Ingress", pods[dst], pods[src], port
        )

    wanted = {
        ("ranker", "embedder", PORTS["embedder"]),
        ("ranker", "indexer", PORTS["indexer"]),
        ("indexer", "embedder", PORTS["embedder"]),
        ("indexer", "milvus", MILVUS_PORT),
        ("client", "ranker", PORTS["ranker"]),
        ("enroller", "indexer", PORTS["indexer"]),
        ("enroller", "embedder", PORTS["embedder"]),
        *{("prometheus", s, METRICS_PORT) for s in SERVICES},
        *{(s, "dns", 53) for s in SERVICES},
    }
    sources = ("ranker", "indexer", "embedder", "client", "enroller", "prometheus", "stranger")
    targets = ("ranker", "indexer", "embedder", "milvus", "dns")
    for src in sources:
        for dst in targets:
            for port in {*PORTS.values(), METRICS_PORT, MILVUS_PORT, 53}:
                if src == dst or (src not in SERVICES and dst not in SERVICES):
                    continue  # inside one service, and traffic between others, are not ours to rule
                expected = (src, dst, port) in wanted
                assert allowed(src, dst, port) == expected, (
                    f"{src} -> {dst}:{port} should be {'allowed' if expected else 'denied'}"
                )
    deny = of_kind(docs, "NetworkPolicy")["kinship-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and not deny.get("ingress") and not deny.get("egress")


def test_prod_is_scraped_by_the_prometheus_operator() -> None:
    docs = render("prod")
    (monitor,) = of_kind(docs, "ServiceMonitor").values()
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/part-of": "kinship-search"}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    for svc in (of_kind(docs, "Service")[f"kinship-{s}"] for s in SERVICES):
        assert svc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kinship-search"


def test_the_embedder_and_ranker_read_one_artifacts_claim_read_only(overlay) -> None:
    _, docs = overlay
    (claim,) = of_kind(docs, "PersistentVolumeClaim").values()
    assert claim["metadata"]["name"] == "kinship-artifacts"
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"], "every replica mounts it, none writes"
    for service in ("embedder", "ranker"):
        spec = deployment(docs, service)["spec"]["template"]["spec"]
        env = container_env(docs, service)
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = [
            m
            for m in container(docs, service)["volumeMounts"]
            if volumes[m["name"]].get("persistentVolumeClaim", {}).get("claimName") == "kinship-artifacts"
        ]
        assert len(mounts) == 1, f"{service} must mount the kinship-artifacts claim once"
        (mount,) = mounts
        assert mount.get("readOnly") is True, f"{service} must not be able to write artifacts"
        assert volumes[mount["name"]]["persistentVolumeClaim"].get("readOnly") is True
        assert env.get("KINSHIP_ARTIFACTS_DIR") == mount["mountPath"], f"{service} must look for artifacts in the mount"
    indexer = deployment(docs, "indexer")["spec"]["template"]["spec"]
    assert all("persistentVolumeClaim" not in v for v in indexer["volumes"]), "the indexer has no use for artifacts"
