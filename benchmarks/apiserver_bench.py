"""Section 2: pod-create latency on a real kube-apiserver + etcd, with the webhook registered vs without.

Uses the e2e harness (tests/e2e: binaries, Cluster, webhooks). The webhook (the real server process, TLS)
is registered with a namespaceSelector that matches one namespace only, so creates in the two namespaces
alternate pair by pair in one run: the same apiserver, etcd and client, one path calling the webhook and
one not. Pods are the fixture pods (opted in by pod label), created for real (stored in etcd; there is no
kubelet, they stay Pending). The client is one keep-alive `requests.Session` posting JSON.
"""

from __future__ import annotations

import copy
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import log, median, percentile
from benchmarks.reviews import opted_in
from benchmarks.servers import make_certs, start_ours, start_server
from tests.fixtures import pods as fixture_pods
from webhook.admission import config as cfg

HOOKED, FLOOR, PLAIN = "bench-hooked", "bench-floor", "bench-plain"
ECHO_APP = "benchmarks.floor_app:echo_app"
SELECTOR_LABEL = "wkw-bench"
INJECTABLE_KINDS = ("kfp-v1-component", "kfp-v2-executor")
READY_DEADLINE_S = 60.0


def creatable(name: str) -> dict[str, Any]:
    """A fixture pod as a client would submit it: no server-set metadata, opted in by label."""
    pod = opted_in(fixture_pods.load_pod(name))
    metadata = pod["metadata"]
    for key in ("uid", "resourceVersion", "creationTimestamp", "ownerReferences", "generateName", "managedFields"):
        metadata.pop(key, None)
    pod["spec"].pop("nodeName", None)
    pod.pop("status", None)
    return pod


def app_seconds(server: Any) -> tuple[float, int]:
    """(sum, count) of the webhook's own admission-duration histogram, from its /metrics."""
    _status, payload = server.request("GET", "/metrics")
    total, count = 0.0, 0
    for line in payload.decode().splitlines():
        if line.startswith("wandb_kfp_webhook_admission_duration_seconds_sum"):
            total = float(line.split()[-1])
        elif line.startswith("wandb_kfp_webhook_admission_duration_seconds_count"):
            count = int(float(line.split()[-1]))
    return total, count


def established_to(port: int) -> int:
    """TCP connections in ESTABLISHED state whose local port is `port` (the apiserver's to the webhook)."""
    found = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                found += 1
    return found


def run(out_dir: Path, *, pairs: int, rounds: int) -> dict[str, Any]:
    try:
        from tests.e2e.binaries import BinariesUnavailable, ensure_binaries
        from tests.e2e.cluster import Cluster
        from tests.e2e.webhooks import mutating_webhook_configuration, register_mutating_webhook, webhook_url
    except ImportError as error:
        return {"skipped": f"the e2e harness (tests/e2e) is not importable: {error}"}
    import requests

    build = os.environ.get("WKW_BENCH_BUILD_E2E", "0") == "1"
    try:
        binaries = ensure_binaries(build=build, with_helm=False)
    except BinariesUnavailable as error:
        return {
            "skipped": f"apiserver/etcd binaries unavailable ({error}); build them once with "
            "`python -m tests.e2e.binaries` or run with WKW_BENCH_BUILD_E2E=1"
        }
    work = Path(tempfile.mkdtemp(prefix="wkw-bench-api-"))
    log("section 2: starting etcd + kube-apiserver")
    cluster = Cluster(binaries).start()
    server = floor = None
    try:
        certs = make_certs(work / "certs")
        server = start_ours(certs, out_dir / "logs")
        floor = start_server("echo-floor", ECHO_APP, certs, out_dir / "logs")
        for namespace, value in ((HOOKED, "hooked"), (FLOOR, "floor"), (PLAIN, "plain")):
            cluster.create_namespace(namespace, labels={SELECTOR_LABEL: value})
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {cluster.token}"
        session.verify = str(cluster.ca_file)
        session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override session.verify
        for namespace in (HOOKED, FLOOR, PLAIN):
            for account in {
                creatable(n)["spec"].get("serviceAccountName") for n in fixture_pods.fixtures_of_kind("kfp-v2-executor")
            }:
                if account and account != "default":
                    response = session.post(
                        f"{cluster.url}/api/v1/namespaces/{namespace}/serviceaccounts",
                        json={"metadata": {"name": account}},
                        timeout=30,
                    )
                    if response.status_code not in (201, 409):
                        raise RuntimeError(f"service account: {response.status_code} {response.text[:300]}")
        with cluster.api_client() as api_client:
            for config_name, port, value in (
                ("wkw-bench", server.port, "hooked"),
                ("wkw-bench-floor", floor.port, "floor"),
            ):
                register_mutating_webhook(
                    api_client,
                    mutating_webhook_configuration(
                        config_name,
                        webhook_url(port),
                        certs.ca_file.read_bytes(),
                        namespace_selector={"matchLabels": {SELECTOR_LABEL: value}},
                        failure_policy="Fail",
                        timeout_seconds=10,
                    ),
                )
        names = [entry["name"] for entry in fixture_pods.load_index() if entry["kind"] in INJECTABLE_KINDS]
        templates = {name: creatable(name) for name in names}

        def create(namespace: str, name: str, dry_run: bool = False) -> tuple[float, dict[str, Any]]:
            pod = copy.deepcopy(templates[name])
            pod["metadata"]["name"] = f"{name}-{uuid.uuid4().hex[:10]}"
            pod["metadata"]["namespace"] = namespace
            url = f"{cluster.url}/api/v1/namespaces/{namespace}/pods" + ("?dryRun=All" if dry_run else "")
            started = time.perf_counter()
            response = session.post(url, json=pod, timeout=30)
            elapsed = time.perf_counter() - started
            if response.status_code != 201:
                raise RuntimeError(f"pod create in {namespace}: {response.status_code} {response.text[:500]}")
            return elapsed * 1000, response.json()

        deadline = time.monotonic() + READY_DEADLINE_S
        while True:  # the apiserver picks a new webhook configuration up after a short delay
            _, admitted = create(HOOKED, names[0], dry_run=True)
            if cfg.INJECTED_ANNOTATION in (admitted["metadata"].get("annotations") or {}):
                _, floor_admitted = create(FLOOR, names[0], dry_run=True)
                if "wkw-bench/floor" in (floor_admitted["metadata"].get("annotations") or {}):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the webhook registration did not take effect within 60 s")
            time.sleep(0.25)
        for index in range(20):  # warm every path (connections, caches)
            for namespace in (HOOKED, FLOOR, PLAIN):
                create(namespace, names[index % len(names)])
        app_before = app_seconds(server)
        log(f"section 2: {rounds} rounds of {pairs} alternating create pairs")
        per_round = []
        injected = 0
        for round_index in range(rounds):
            samples: dict[str, list[float]] = {HOOKED: [], FLOOR: [], PLAIN: []}
            for index in range(pairs):
                name = names[index % len(names)]
                order = [HOOKED, FLOOR, PLAIN]
                shift = (index + round_index) % 3
                for namespace in order[shift:] + order[:shift]:
                    elapsed, admitted = create(namespace, name)
                    samples[namespace].append(elapsed)
                    if namespace == HOOKED:
                        injected += cfg.INJECTED_ANNOTATION in (admitted["metadata"].get("annotations") or {})
            row = {}
            for namespace, key in ((HOOKED, "with_webhook"), (FLOOR, "with_floor_webhook"), (PLAIN, "without_webhook")):
                values = sorted(samples[namespace])
                row[key] = {
                    "p50_ms": round(statistics.median(values), 3),
                    "p99_ms": round(percentile(values, 0.99), 3),
                    "mean_ms": round(statistics.fmean(values), 3),
                }
            row["added_p50_ms"] = round(row["with_webhook"]["p50_ms"] - row["without_webhook"]["p50_ms"], 3)
            row["added_p99_ms"] = round(row["with_webhook"]["p99_ms"] - row["without_webhook"]["p99_ms"], 3)
            row["floor_added_p50_ms"] = round(row["with_floor_webhook"]["p50_ms"] - row["without_webhook"]["p50_ms"], 3)
            per_round.append(row)
            log(f"  round {round_index + 1}: +{row['added_p50_ms']} ms p50, +{row['added_p99_ms']} ms p99")
        app_after = app_seconds(server)
        webhook_connections = established_to(server.port)
        session.close()
    finally:
        for started in (server, floor):
            if started is not None:
                started.stop()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    summary: dict[str, Any] = {
        "apiserver": cluster.versions.get("server"),
        "pairs_per_round": pairs,
        "rounds": rounds,
        "creates_injected": injected,
        "creates_with_webhook": pairs * rounds,
        "fixtures": names,
    }
    for key in ("with_webhook", "with_floor_webhook", "without_webhook"):
        summary[key] = {
            metric: median([row[key][metric] for row in per_round]) for metric in ("p50_ms", "p99_ms", "mean_ms")
        }
    summary["added_p50_ms"] = median([row["added_p50_ms"] for row in per_round])
    summary["added_p99_ms"] = median([row["added_p99_ms"] for row in per_round])
    summary["floor_added_p50_ms"] = median([row["floor_added_p50_ms"] for row in per_round])
    count = app_after[1] - app_before[1]
    summary["webhook_app_mean_ms"] = round(1000 * (app_after[0] - app_before[0]) / count, 3) if count else None
    summary["webhook_app_reviews"] = count
    summary["apiserver_to_webhook_connections"] = webhook_connections
    summary["ratio_p50"] = round(summary["with_webhook"]["p50_ms"] / summary["without_webhook"]["p50_ms"], 3)
    summary["per_round"] = per_round
    return summary
