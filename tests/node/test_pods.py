"""Pods on the real node: the kubelet runs them with containerd, runc and CNI, kube-proxy routes Services.

The pod shapes are the ones the webhook will produce: an init container running as 65532 filling an
emptyDir with a sizeLimit, a main container reading it through a read-only mount, and the component
talking to the apiserver through the `kubernetes` Service with its ServiceAccount token.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from typing import Any

import requests

from tests.e2e.certs import CertificateAuthority
from tests.node.argo import unique
from tests.node.cluster import KUBERNETES_SERVICE_IP, NODE_NAME, POD_CIDR, SERVICE_CIDR, NodeCluster
from tests.node.images import image_ref

# Runs in the pod: read what the init container left, then ask the apiserver about this very pod.
_API_CLIENT = r"""
import json, os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(f"{sa}/token").read()
namespace = open(f"{sa}/namespace").read()
context = ssl.create_default_context(cafile=f"{sa}/ca.crt")
base = f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}"
def get(path):
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    return json.load(urllib.request.urlopen(request, context=context, timeout=20))
me = get(f"/api/v1/namespaces/{namespace}/pods/{os.environ['POD_NAME']}")
try:
    open("/shared/written-by-init", "a").write("x")
    writable = True
except OSError:
    writable = False
routes = [line.split() for line in open("/proc/net/route").read().splitlines()[1:]]
print(json.dumps({
    "routes": [[int(r[1], 16).to_bytes(4, "little").hex(), int(r[7], 16).to_bytes(4, "little").hex()] for r in routes],
    "resolv_conf": open("/etc/resolv.conf").read(),
    "service_host": os.environ["KUBERNETES_SERVICE_HOST"],
    "server": get("/version")["gitVersion"],
    "pod_ip": me["status"]["podIP"],
    "node": me["spec"]["nodeName"],
    "uid": os.getuid(),
    "shared": open("/shared/written-by-init").read(),
    "shared_writable": writable,
}))
"""


def _pod_reader_role(namespace: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader", "namespace": namespace},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "pod-reader", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
        },
    ]


def test_pod_with_init_container_reaches_the_apiserver_through_the_kubernetes_service(
    node_cluster: NodeCluster,
) -> None:
    namespace = unique("pods")
    node_cluster.create_namespace(namespace)
    node_cluster.apply(*_pod_reader_role(namespace))
    python = image_ref("python")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "api-client", "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [
                {
                    "name": "fill",
                    "image": python,
                    "command": ["python3", "-c", "open('/shared/written-by-init', 'w').write('from-init')"],
                    "securityContext": {"runAsUser": 65532, "runAsGroup": 65532},
                    "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                }
            ],
            "containers": [
                {
                    "name": "main",
                    "image": python,
                    "command": ["python3", "-c", _API_CLIENT],
                    "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "volumeMounts": [{"name": "shared", "mountPath": "/shared", "readOnly": True}],
                }
            ],
            "securityContext": {"fsGroup": 65532},
            "volumes": [{"name": "shared", "emptyDir": {"sizeLimit": "16Mi"}}],
        },
    }
    node_cluster.apply(pod)
    done = node_cluster.wait_pod_done(namespace, "api-client")

    log = node_cluster.logs(namespace, "api-client", "main")
    assert done["status"]["phase"] == "Succeeded", log
    seen = json.loads(log.strip().splitlines()[-1])
    assert seen["service_host"] == KUBERNETES_SERVICE_IP
    assert seen["server"] == "v1.36.3"
    assert seen["node"] == NODE_NAME
    assert ipaddress.ip_address(seen["pod_ip"]) in ipaddress.ip_network(POD_CIDR)
    assert seen["pod_ip"] == done["status"]["podIP"]
    assert seen["shared"] == "from-init"
    assert seen["shared_writable"] is False
    # Confined to this machine: routes to the pod and Service ranges only, no default route, no DNS server.
    routes = {(bytes.fromhex(dst), bytes.fromhex(mask)) for dst, mask in seen["routes"]}
    networks = {
        str(ipaddress.ip_network((int.from_bytes(dst, "big"), bin(int.from_bytes(mask, "big")).count("1"))))
        for dst, mask in routes
    }
    assert networks == {POD_CIDR, SERVICE_CIDR}
    assert "nameserver" not in seen["resolv_conf"]
    init_state = done["status"]["initContainerStatuses"][0]["state"]["terminated"]
    assert init_state["exitCode"] == 0


def test_pod_failure_is_reported_with_its_exit_code(node_cluster: NodeCluster) -> None:
    namespace = unique("fail")
    node_cluster.create_namespace(namespace)
    node_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "exits-7", "namespace": namespace},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": image_ref("python"),
                        "command": ["python3", "-c", "import sys; print('bye'); sys.exit(7)"],
                    }
                ],
            },
        }
    )
    done = node_cluster.wait_pod_done(namespace, "exits-7")
    assert done["status"]["phase"] == "Failed"
    assert done["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 7
    assert node_cluster.logs(namespace, "exits-7").strip() == "bye"


_SERVER = r"""
import http.server, socket
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = socket.gethostname().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("", 8080), Handler).serve_forever()
"""

_CLIENT = r"""
import sys, urllib.request
seen = set()
for _ in range(20):
    seen.add(urllib.request.urlopen(f"http://{sys.argv[1]}:80/", timeout=10).read().decode())
print(" ".join(sorted(seen)))
"""


def test_deployment_becomes_ready_and_its_service_routes_from_pods_and_host(node_cluster: NodeCluster) -> None:
    namespace = unique("deploy")
    node_cluster.create_namespace(namespace)
    labels = {"app": "hello"}
    node_cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "hello", "namespace": namespace},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "server",
                                "image": image_ref("python"),
                                "command": ["python3", "-c", _SERVER],
                                "ports": [{"containerPort": 8080}],
                                "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "hello", "namespace": namespace},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    deployment_path = f"/apis/apps/v1/namespaces/{namespace}/deployments/hello"
    node_cluster.wait_for(
        lambda: node_cluster.get_json(deployment_path)["status"].get("readyReplicas") == 2, "Deployment hello Ready"
    )
    pods = {
        pod["metadata"]["name"]
        for pod in node_cluster.get_json(f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3Dhello")["items"]
    }
    cluster_ip = node_cluster.get_json(f"/api/v1/namespaces/{namespace}/services/hello")["spec"]["clusterIP"]
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(SERVICE_CIDR)

    # From a pod: pod -> ClusterIP -> (kube-proxy DNAT on the host) -> another pod on the same bridge.
    node_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client", "namespace": namespace},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "main", "image": image_ref("python"), "command": ["python3", "-c", _CLIENT, cluster_ip]}
                ],
            },
        }
    )
    done = node_cluster.wait_pod_done(namespace, "client")
    log = node_cluster.logs(namespace, "client")
    assert done["status"]["phase"] == "Succeeded", log
    answered = set(log.split())
    assert answered and answered <= pods

    # From the host (what the tests do to read MinIO): kube-proxy's OUTPUT rules translate it too.
    node_cluster.wait_for(
        lambda: requests.get(f"http://{cluster_ip}:80/", timeout=5).text in pods, "host -> ClusterIP", timeout=60
    )


_WEBHOOK = r"""
import base64, http.server, json, ssl
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        patch = [{"op": "add", "path": "/metadata/labels/seen-by", "value": "in-cluster-webhook"}]
        body = json.dumps({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {
                "uid": review["request"]["uid"],
                "allowed": True,
                "patchType": "JSONPatch",
                "patch": base64.b64encode(json.dumps(patch).encode()).decode(),
            },
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
server = http.server.ThreadingHTTPServer(("", 8443), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/tls/tls.crt", "/tls/tls.key")
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def test_apiserver_calls_a_webhook_served_by_a_pod_through_its_service(node_cluster: NodeCluster) -> None:
    """The path the chart's webhook will take: apiserver (host) -> Service ClusterIP -> pod, over TLS."""
    namespace = unique("hook")
    node_cluster.create_namespace(namespace, labels={"wkw-node-test": namespace})
    ca = CertificateAuthority("wkw-node-test-webhook-ca")
    serving = ca.issue("hook", dns_names=(f"hook.{namespace}.svc",), ip_addresses=())
    labels = {"app": "hook"}
    node_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hook-tls", "namespace": namespace},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": serving.cert_pem.decode(), "tls.key": serving.key_pem.decode()},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "hook", "namespace": namespace},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "server",
                                "image": image_ref("python"),
                                "command": ["python3", "-c", _WEBHOOK],
                                "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1},
                                "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": True}],
                            }
                        ],
                        "volumes": [{"name": "tls", "secret": {"secretName": "hook-tls"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "hook", "namespace": namespace},
            "spec": {"selector": labels, "ports": [{"port": 443, "targetPort": 8443}]},
        },
    )
    node_cluster.wait_for(
        lambda: (
            node_cluster.get_json(f"/apis/apps/v1/namespaces/{namespace}/deployments/hook")["status"].get(
                "readyReplicas"
            )
            == 1
        ),
        "webhook Deployment Ready",
    )
    node_cluster.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": namespace},
            "webhooks": [
                {
                    "name": "hook.wkw-node.test",
                    "clientConfig": {
                        "service": {"namespace": namespace, "name": "hook", "path": "/mutate", "port": 443},
                        "caBundle": base64.b64encode(ca.cert_pem).decode(),
                    },
                    "rules": [
                        {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}
                    ],
                    "namespaceSelector": {"matchLabels": {"wkw-node-test": namespace}},
                    "objectSelector": {"matchLabels": {"mutate": "me"}},
                    # Fail, so a webhook the apiserver cannot reach fails the pod create (and this test).
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 10,
                }
            ],
        }
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "mutated", "namespace": namespace, "labels": {"mutate": "me"}},
        "spec": {"containers": [{"name": "main", "image": image_ref("python"), "command": ["true"]}]},
    }
    try:
        # A new configuration takes effect after a short delay: retry dry-run creates until it is called.
        def mutated() -> bool:
            result = node_cluster.kubectl(
                "create", "--dry-run=server", "-o", "json", "-f", "-", input_text=json.dumps(pod), check=False
            )
            labels = json.loads(result.stdout)["metadata"]["labels"] if result.returncode == 0 else {}
            return labels.get("seen-by") == "in-cluster-webhook"

        node_cluster.wait_for(mutated, "webhook called through its Service", timeout=120)
        node_cluster.apply(pod)
        stored = node_cluster.get_json(f"/api/v1/namespaces/{namespace}/pods/mutated")
        assert stored["metadata"]["labels"]["seen-by"] == "in-cluster-webhook"
    finally:
        node_cluster.kubectl("delete", "mutatingwebhookconfiguration", namespace, "--ignore-not-found")
