"""Self-managed certificates against a real kube-apiserver, with the chart's own RBAC.

The chart is rendered by the real helm into a fresh namespace per test; its ServiceAccount, Role,
ClusterRoles, bindings, empty Secret and MutatingWebhookConfiguration are applied, and `certs sync`
runs with a real bound token of that ServiceAccount. So every call it makes is authorised exactly as
in a cluster. Invariant checked after every pass: the serving certificate written to disk is signed by
a CA that every webhook's caBundle holds (what keeps admission calls working through a rotation).
"""

from __future__ import annotations

import base64
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography import x509
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.chart.render import REPO_ROOT, template
from tests.e2e.cluster import Cluster
from webhook.certificates import checks, generate, rotation, sync
from webhook.certificates.rotation import Material, Policy
from webhook.certificates.sync import CertSyncer
from webhook.cli import certs as certs_cli

CHART_KINDS_FOR_CERTS = (
    "ServiceAccount",
    "Secret",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "MutatingWebhookConfiguration",
)
POLL_DEADLINE_SECONDS = 60.0


@dataclass
class Install:
    """One rendered-and-applied chart release and the ServiceAccount's credentials."""

    cluster: Cluster
    namespace: str
    release: str
    secret: str
    webhook_config: str
    service: str
    service_account: str
    token: str
    kubeconfig: Path
    manifests: str

    def policy(self, **overrides: Any) -> Policy:
        settings: dict[str, Any] = {
            "dns_names": rotation.service_dns_names(self.service, self.namespace),
            "trust_grace": timedelta(0),
        }
        settings.update(overrides)
        return Policy(**settings)

    def syncer(self, out_dir: Path, *, token: str | None = None, **policy: Any) -> CertSyncer:
        return CertSyncer(
            self.cluster.api_client(token or self.token),
            namespace=self.namespace,
            secret_name=self.secret,
            webhook_config_name=self.webhook_config,
            out_dir=out_dir,
            policy=self.policy(**policy),
        )

    def cli_args(self, out_dir: Path, *extra: str) -> list[str]:
        return [
            "--namespace",
            self.namespace,
            "--secret",
            self.secret,
            "--webhook-config",
            self.webhook_config,
            "--service",
            self.service,
            "--out",
            str(out_dir),
            "--kubeconfig",
            str(self.kubeconfig),
            "--trust-grace",
            "0",
            *extra,
        ]

    def read_secret(self) -> Any:
        with self.cluster.api_client() as admin:
            return k8s.CoreV1Api(admin).read_namespaced_secret(self.secret, self.namespace)

    def material(self) -> Material:
        return Material.from_secret_data(self.read_secret().data)

    def write_material(self, material: Material) -> None:
        """As another writer (the admin) would: replace the Secret's data."""
        with self.cluster.api_client() as admin:
            core = k8s.CoreV1Api(admin)
            secret = core.read_namespaced_secret(self.secret, self.namespace)
            secret.data = material.to_secret_data()
            core.replace_namespaced_secret(self.secret, self.namespace, secret)

    def ca_bundles(self) -> list[bytes]:
        with self.cluster.api_client() as admin:
            config = k8s.AdmissionregistrationV1Api(admin).read_mutating_webhook_configuration(self.webhook_config)
        return [base64.b64decode(hook.client_config.ca_bundle or "") for hook in config.webhooks]


@pytest.fixture(scope="module")
def helm_binary(e2e_binaries: Any) -> Path:
    if e2e_binaries.helm is None:
        pytest.skip("helm is not built")
    return Path(e2e_binaries.helm)


@pytest.fixture
def install(apiserver: Cluster, helm_binary: Path) -> Iterator[Install]:
    namespace = f"wkw-certs-{uuid.uuid4().hex[:6]}"
    release = f"c{uuid.uuid4().hex[:6]}"
    apiserver.create_namespace(namespace)
    rendered = template(helm_binary, namespace=namespace, release=release)
    manifests = yaml.safe_dump_all(
        [obj for obj in rendered.objects if obj["kind"] in CHART_KINDS_FOR_CERTS], sort_keys=False
    )
    apiserver.kubectl("apply", "-f", "-", input_text=manifests)
    deployment_args = rendered.one("Deployment")["spec"]["template"]["spec"]["initContainers"][0]["args"]
    parsed = certs_cli.build_sync_parser().parse_args(deployment_args[2:])
    service_account = rendered.one("ServiceAccount")["metadata"]["name"]
    token = apiserver.service_account_token(namespace, service_account)
    kubeconfig = apiserver.kubeconfig_for_token(token, f"system:serviceaccount:{namespace}:{service_account}")
    yield Install(
        cluster=apiserver,
        namespace=namespace,
        release=release,
        secret=parsed.secret,
        webhook_config=parsed.webhook_config,
        service=parsed.service,
        service_account=service_account,
        token=token,
        kubeconfig=kubeconfig,
        manifests=manifests,
    )
    apiserver.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input_text=manifests, check=False)
    apiserver.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "KUBERNETES_SERVICE_HOST"}
    return subprocess.run(
        [sys.executable, "-m", "webhook.cli", "certs", "sync", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=REPO_ROOT,
        env=env,
    )


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def assert_served_cert_is_trusted(install: Install, out_dir: Path) -> x509.Certificate:
    """The files form a pair, and every webhook's caBundle holds the CA that signed the leaf."""
    cert_pem, key_pem = (out_dir / "tls.crt").read_bytes(), (out_dir / "tls.key").read_bytes()
    assert checks.key_matches_cert(cert_pem, key_pem)
    leaf = load(cert_pem)
    bundles = install.ca_bundles()
    assert bundles and all(bundles)
    for bundle in bundles:
        cas = checks.split_pem_certificates(bundle)
        assert any(_signed_by(leaf, ca) for ca in cas), "a webhook would reject the served certificate"
    return leaf


def _signed_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except Exception:  # InvalidSignature, ValueError: not this CA
        return False
    return True


def aged_material(install: Install, *, ca_age_days: int, ca_valid_days: int, leaf_age_days: int) -> Material:
    """Material issued in the past, so it is due for renewal now (no waiting, no clock tricks)."""
    now = datetime.now(timezone.utc)
    ca_cert, ca_key = generate.generate_ca(
        "aged test CA", valid_days=ca_valid_days, now=now - timedelta(days=ca_age_days)
    )
    tls_cert, tls_key = generate.generate_serving_cert(
        ca_cert, ca_key, install.policy().dns_names, valid_days=90, now=now - timedelta(days=leaf_age_days)
    )
    return Material(ca_cert=ca_cert, ca_key=ca_key, bundle=ca_cert, tls_cert=tls_cert, tls_key=tls_key)


# -- creation -------------------------------------------------------------------------------------------


def test_first_sync_fills_the_chart_secret_writes_files_and_sets_ca_bundle(install: Install, tmp_path: Path) -> None:
    out = tmp_path / "tls"
    result = run_cli(*install.cli_args(out, "--once"))
    assert result.returncode == 0, result.stderr
    secret = install.read_secret()
    assert set(secret.data) == {"ca.crt", "ca.key", "ca-bundle.crt", "tls.crt", "tls.key"}
    assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "Helm", "the chart's Secret was updated"
    material = install.material()
    assert (out / "tls.crt").read_bytes() == material.tls_cert
    assert (out / "tls.key").read_bytes() == material.tls_key
    leaf = assert_served_cert_is_trusted(install, out)
    assert f"{install.service}.{install.namespace}.svc" in checks.cert_sans(material.tls_cert)[0]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(days=90) + generate.CLOCK_SKEW_MARGIN
    assert install.ca_bundles() == [material.bundle] * len(install.ca_bundles())
    assert "PRIVATE KEY" not in result.stderr + result.stdout, "key material must never be logged"

    version = secret.metadata.resource_version
    again = run_cli(*install.cli_args(out, "--once"))
    assert again.returncode == 0, again.stderr
    assert install.read_secret().metadata.resource_version == version, "a good Secret is not rewritten"


def test_service_account_can_do_nothing_else(install: Install) -> None:
    with install.cluster.api_client(install.token) as api_client:
        core = k8s.CoreV1Api(api_client)
        admission = k8s.AdmissionregistrationV1Api(api_client)
        denied = [
            lambda: core.create_namespaced_secret(
                install.namespace, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="other"))
            ),
            lambda: core.read_namespaced_secret("other", install.namespace),
            lambda: core.list_namespaced_secret(install.namespace),
            lambda: core.delete_namespaced_secret(install.secret, install.namespace),
            lambda: admission.list_mutating_webhook_configuration(),
            lambda: admission.patch_mutating_webhook_configuration("someone-elses", [{"op": "test", "path": "/x"}]),
            lambda: admission.delete_mutating_webhook_configuration(install.webhook_config),
        ]
        for call in denied:
            with pytest.raises(ApiException) as refused:
                call()
            assert refused.value.status == 403
        assert core.read_namespaced_secret(install.secret, install.namespace).metadata.name == install.secret
        assert core.list_namespace().items, "namespaces are readable (the watch-backed cache)"


# -- renewal --------------------------------------------------------------------------------------------


def test_expiring_leaf_is_renewed_by_the_same_ca(install: Install, tmp_path: Path) -> None:
    aged = aged_material(install, ca_age_days=100, ca_valid_days=3650, leaf_age_days=70)
    install.write_material(aged)
    outcome = install.syncer(tmp_path).sync_once()
    renewed = install.material()
    assert outcome.secret_written
    assert renewed.ca_cert == aged.ca_cert and renewed.bundle == aged.bundle
    assert renewed.tls_cert != aged.tls_cert
    assert load(renewed.tls_cert).not_valid_after_utc > load(aged.tls_cert).not_valid_after_utc + timedelta(days=60)
    assert_served_cert_is_trusted(install, tmp_path)


def test_short_validity_forces_renewal_on_every_pass(install: Install, tmp_path: Path) -> None:
    """A leaf valid 2 days with a renewal window of 3 is always due: each pass issues a new one."""
    syncer = install.syncer(tmp_path, leaf_valid_days=2, leaf_renew_before=timedelta(days=3))
    first = syncer.sync_once()
    second = syncer.sync_once()
    assert first.secret_written and second.secret_written
    assert first.material.tls_cert != second.material.tls_cert
    assert first.material.ca_cert == second.material.ca_cert
    assert (tmp_path / "tls.crt").read_bytes() == second.material.tls_cert
    assert_served_cert_is_trusted(install, tmp_path)


def test_ca_rotation_keeps_every_served_certificate_trusted(install: Install, tmp_path: Path) -> None:
    aged = aged_material(install, ca_age_days=3600, ca_valid_days=3650, leaf_age_days=1)
    install.write_material(aged)
    syncer = install.syncer(tmp_path)

    first = syncer.sync_once()  # new CA joins the bundle; the old leaf keeps being served
    rotated = install.material()
    assert first.leaf_deferred and rotated.ca_cert != aged.ca_cert
    assert rotated.tls_cert == aged.tls_cert
    assert [checks.fingerprint(c) for c in checks.split_pem_certificates(rotated.bundle)] == [
        checks.fingerprint(load(rotated.ca_cert)),
        checks.fingerprint(load(aged.ca_cert)),
    ]
    assert all(bundle == rotated.bundle for bundle in install.ca_bundles())
    assert_served_cert_is_trusted(install, tmp_path)

    second = syncer.sync_once()  # every webhook trusts the new CA now: re-sign the leaf with it
    assert not second.leaf_deferred
    final = install.material()
    load(final.tls_cert).verify_directly_issued_by(load(rotated.ca_cert))
    assert final.bundle == rotated.bundle, "the old CA stays until it expires"
    leaf = assert_served_cert_is_trusted(install, tmp_path)
    leaf.verify_directly_issued_by(load(rotated.ca_cert))


# -- concurrency ----------------------------------------------------------------------------------------


class PausingSyncer(CertSyncer):
    """Reads the Secret, then waits until `proceed` is set before acting on what it read: a replica
    that lost the race by a hair, made deterministic."""

    def __init__(self, *args: Any, read_done: threading.Event, proceed: threading.Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_done, self.proceed = read_done, proceed

    def _read_secret(self) -> Any | None:
        found = super()._read_secret()
        if not self.read_done.is_set():
            self.read_done.set()
            assert self.proceed.wait(POLL_DEADLINE_SECONDS)
        return found


@pytest.mark.parametrize("path", ["create", "update"])
def test_a_replica_that_loses_the_race_reads_and_uses_the_winners_cert(
    install: Install, tmp_path: Path, path: str
) -> None:
    token = install.token
    if path == "create":
        # Create cannot be granted by name, so only a broader identity ever takes this path.
        with install.cluster.api_client() as admin:
            k8s.CoreV1Api(admin).delete_namespaced_secret(install.secret, install.namespace)
        token = install.cluster.token
    read_done, proceed = threading.Event(), threading.Event()
    loser = PausingSyncer(
        install.cluster.api_client(token),
        namespace=install.namespace,
        secret_name=install.secret,
        webhook_config_name=install.webhook_config,
        out_dir=tmp_path / "loser",
        policy=install.policy(),
        read_done=read_done,
        proceed=proceed,
    )
    winner = install.syncer(tmp_path / "winner", token=token)
    results: dict[str, sync.Outcome] = {}
    thread = threading.Thread(target=lambda: results.update(loser=loser.sync_once()))
    thread.start()
    assert read_done.wait(POLL_DEADLINE_SECONDS)
    results["winner"] = winner.sync_once()
    version = install.read_secret().metadata.resource_version
    proceed.set()
    thread.join(POLL_DEADLINE_SECONDS)
    assert results["winner"].secret_written and results["winner"].lost_races == 0
    assert results["loser"].lost_races == 1 and not results["loser"].secret_written
    assert install.read_secret().metadata.resource_version == version, "the loser wrote nothing"
    assert (tmp_path / "loser" / "tls.crt").read_bytes() == (tmp_path / "winner" / "tls.crt").read_bytes()
    assert (tmp_path / "loser" / "tls.key").read_bytes() == (tmp_path / "winner" / "tls.key").read_bytes()
    assert_served_cert_is_trusted(install, tmp_path / "loser")


def test_free_running_replicas_converge_on_one_certificate(install: Install, tmp_path: Path) -> None:
    syncers = [install.syncer(tmp_path / f"replica-{i}") for i in range(4)]
    start = threading.Barrier(len(syncers))
    outcomes: list[sync.Outcome] = []
    lock = threading.Lock()

    def run(syncer: CertSyncer) -> None:
        start.wait()
        outcome = syncer.sync_once()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=run, args=(s,)) for s in syncers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(POLL_DEADLINE_SECONDS)
    assert len(outcomes) == len(syncers)
    assert sum(o.secret_written for o in outcomes) == 1, "exactly one replica generated the certificate"
    served = {(tmp_path / f"replica-{i}" / "tls.crt").read_bytes() for i in range(len(syncers))}
    assert served == {install.material().tls_cert}
    assert_served_cert_is_trusted(install, tmp_path / "replica-0")


# -- the sidecar ----------------------------------------------------------------------------------------


def test_sidecar_loop_picks_up_a_certificate_another_replica_wrote(install: Install, tmp_path: Path) -> None:
    out = tmp_path / "tls"
    assert run_cli(*install.cli_args(out, "--once")).returncode == 0
    env = {key: value for key, value in os.environ.items() if key != "KUBERNETES_SERVICE_HOST"}
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "webhook.cli", "certs", "sync", *install.cli_args(out, "--interval", "0.2")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO_ROOT,
        env=env,
    )
    try:
        # Another replica renewed the leaf (same CA) and wrote it to the Secret first.
        current = install.material()
        tls_cert, tls_key = generate.generate_serving_cert(
            current.ca_cert, current.ca_key, install.policy().dns_names, valid_days=90
        )
        renewed = Material(current.ca_cert, current.ca_key, current.bundle, tls_cert, tls_key)
        install.write_material(renewed)
        deadline = time.monotonic() + POLL_DEADLINE_SECONDS
        while time.monotonic() < deadline and (out / "tls.crt").read_bytes() != renewed.tls_cert:
            time.sleep(0.1)
        assert (out / "tls.crt").read_bytes() == renewed.tls_cert
        assert (out / "tls.key").read_bytes() == renewed.tls_key
    finally:
        sidecar.send_signal(signal.SIGTERM)
        output, _ = sidecar.communicate(timeout=60)
    assert sidecar.returncode == 0, output
    assert "PRIVATE KEY" not in output


# -- rotation under load, through the real apiserver and the real server ----------------------------


@pytest.fixture
def served(install: Install, tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """The real `wandb-kfp-webhook serve` on 127.0.0.1, reading the files `certs sync` writes, with the
    chart's ServiceAccount for its namespace watch; yields (base URL, TLS dir, team namespace)."""
    from tests.e2e.cluster import free_port
    from tests.e2e.webhooks import register_mutating_webhook

    out = tmp_path / "tls"
    # The CA is 10 days from the end of its 180-day rotation window: the first pass starts a rotation.
    aged = aged_material(install, ca_age_days=3600, ca_valid_days=3650, leaf_age_days=1)
    now = datetime.now(timezone.utc)
    tls_cert, tls_key = generate.generate_serving_cert(
        aged.ca_cert,
        aged.ca_key,
        install.policy().dns_names,
        ["127.0.0.1"],
        valid_days=90,
        now=now - timedelta(days=1),
    )
    install.write_material(Material(aged.ca_cert, aged.ca_key, aged.ca_cert, tls_cert, tls_key))
    sync.write_serving_files(out, install.material())
    port = free_port()
    base_url = f"https://127.0.0.1:{port}"
    rendered_config = next(
        doc for doc in yaml.safe_load_all(install.manifests) if doc["kind"] == "MutatingWebhookConfiguration"
    )
    from tests.e2e.webhooks import point_at_local

    with install.cluster.api_client() as admin:
        register_mutating_webhook(admin, point_at_local(rendered_config, base_url, aged.ca_cert))
    team = f"wkw-team-{uuid.uuid4().hex[:6]}"
    install.cluster.create_namespace(team, labels={"wandb.ai/inject": "enabled"})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"workers": 1, "watch_namespaces": True}))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KUBERNETES_", "WANDB_"))}
    env.update(KUBECONFIG=str(install.kubeconfig), WANDB_KFP_WEBHOOK_OWN_NAMESPACE=install.namespace)
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log_file:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "webhook.cli",
                "serve",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--tls-cert",
                str(out / "tls.crt"),
                "--tls-key",
                str(out / "tls.key"),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=env,
            start_new_session=True,
        )
    try:
        bundle_file = tmp_path / "bundle.pem"
        bundle_file.write_bytes(aged.ca_cert)
        deadline = time.monotonic() + POLL_DEADLINE_SECONDS
        ready = False
        while time.monotonic() < deadline and not ready and server.poll() is None:
            try:
                ready = requests.get(f"{base_url}/readyz", verify=str(bundle_file), timeout=2).status_code == 200
            except requests.RequestException:
                time.sleep(0.2)
        assert ready, log_path.read_text()[-3000:]
        yield base_url, out, team
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        with install.cluster.api_client() as admin:
            from tests.e2e.webhooks import delete_mutating_webhook

            delete_mutating_webhook(admin, install.webhook_config)
        install.cluster.kubectl("delete", "namespace", team, "--wait=false", check=False)


def _served_leaf(base_url: str) -> bytes:
    host, port = base_url.removeprefix("https://").split(":")
    return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((host, int(port))))


def test_ca_rotation_under_load_never_fails_an_admission_call(
    install: Install, served: tuple[str, Path, str], tmp_path: Path
) -> None:
    from tests.e2e.webhooks import annotation_seen, dry_run_pod_create, probe_pod, wait_for_webhook

    base_url, out, team = served
    argo = {"workflows.argoproj.io/workflow": "wf-rotation"}
    injected = annotation_seen("wandb.ai/injected", "argo")
    with install.cluster.api_client() as admin:
        wait_for_webhook(admin, team, injected, labels=argo)  # the old CA-only bundle works
    syncer = install.syncer(out, ip_addresses=("127.0.0.1",), trust_grace=timedelta(seconds=2))
    failures: list[str] = []
    probes = 0
    stop = threading.Event()

    def probe_continuously() -> None:
        nonlocal probes
        with install.cluster.api_client() as admin:
            while not stop.is_set():
                result = dry_run_pod_create(admin, team, probe_pod(team, argo))
                probes += 1
                if not injected(result):
                    failures.append(f"status={result.error_status} body={result.error_body[:300]}")

    prober = threading.Thread(target=probe_continuously)
    prober.start()
    try:
        first = syncer.sync_once()  # pass 1: new CA joins every caBundle; the old leaf is still served
        old_leaf = _served_leaf(base_url)
        deadline = time.monotonic() + POLL_DEADLINE_SECONDS
        while time.monotonic() < deadline and syncer.sync_once().leaf_deferred:
            time.sleep(0.5)  # the trust grace: every apiserver has seen the new bundle
        final = install.material()
        new_leaf = ssl.PEM_cert_to_DER_cert(final.tls_cert.decode())
        assert new_leaf != old_leaf
        while time.monotonic() < deadline and _served_leaf(base_url) != new_leaf:
            time.sleep(0.2)  # the server reloads the files at a handshake
        assert _served_leaf(base_url) == new_leaf
        seen_after_switch = probes
        while time.monotonic() < deadline and probes < seen_after_switch + 5:
            time.sleep(0.2)
    finally:
        stop.set()
        prober.join(POLL_DEADLINE_SECONDS)
    print(f"\n[rotation] {probes} admission calls during the CA rotation, all injected")
    assert probes >= 10
    assert failures == [], f"{len(failures)} of {probes} admission calls were not injected: {failures[:3]}"
    assert first.leaf_deferred and first.webhooks_patched == len(install.ca_bundles())
    load(final.tls_cert).verify_directly_issued_by(load(final.ca_cert))

    # Control: a bundle without the serving certificate's CA does make calls fail (and pods go through
    # uninjected, failurePolicy Ignore), so the probes above would have seen a broken order.
    other_ca = generate.generate_ca("unrelated CA")[0]
    with install.cluster.api_client() as admin:
        api = k8s.AdmissionregistrationV1Api(admin)
        config = api.read_mutating_webhook_configuration(install.webhook_config)
        patch = [
            {
                "op": "replace",
                "path": f"/webhooks/{i}/clientConfig/caBundle",
                "value": base64.b64encode(other_ca).decode(),
            }
            for i in range(len(config.webhooks))
        ]
        api.patch_mutating_webhook_configuration(install.webhook_config, patch)
        wait_for_webhook(admin, team, lambda result: result.pod is not None and not injected(result), labels=argo)
