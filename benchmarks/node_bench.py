"""Section `node`: what the webhook costs a KFP component pod on a real node (tests/node harness).

A single-node cluster from real parts (kubelet, containerd, kube-proxy, Argo's controller in-cluster,
MinIO), the chart installed by `helm install` with the image `make image` builds, a team namespace
labelled `wandb.ai/inject=enabled` (API-key Secret, offline PVC) and an unlabelled one. The KFP v1
pipeline `node-v1-add` (one `create_component_from_func` step on `python:3.13`, compiled by kfp 1.8.22)
is run in both namespaces at the same time, pair after pair, so both pods of a pair see the same load.

Per pod: created (when a watch on the apiserver first saw it) to `main` started (containerd's
nanosecond record of the container), the shim's init container from start to finish, Argo's own `init`
container, and `main`'s run time (the component, recording offline in the injected pod). Per run: the
apiserver's own histogram of the webhook call (`apiserver_admission_webhook_admission_duration_seconds`
for the namespace webhook), and the webhook's handling time from its /metrics. Nothing is asserted.
"""

from __future__ import annotations

import os
import ssl
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.common import log, median, percentile

PIPELINE = "node-v1-add"
MINOR = "3.13"
WEBHOOK_NAME = "namespaces.wandb-kfp-webhook.wandb.ai"
HISTOGRAM = "apiserver_admission_webhook_admission_duration_seconds"


def _summary(values: list[float]) -> dict[str, Any]:
    clean = sorted(value for value in values if value is not None)
    if not clean:
        return {"n": 0}
    return {
        "n": len(clean),
        "median_s": round(statistics.median(clean), 3),
        "p90_s": round(percentile(clean, 0.9), 3),
        "mean_s": round(statistics.fmean(clean), 3),
        "min_s": round(clean[0], 3),
        "max_s": round(clean[-1], 3),
    }


def _histogram(before: str, after: str, metric: str, **labels: str) -> dict[str, Any]:
    """The difference of one histogram between two scrapes: count, mean, cumulative buckets, estimates."""
    from tests.node.webhook import metric_samples, metric_total

    count = metric_total(after, f"{metric}_count", **labels) - metric_total(before, f"{metric}_count", **labels)
    total = metric_total(after, f"{metric}_sum", **labels) - metric_total(before, f"{metric}_sum", **labels)
    buckets: dict[float, float] = {}
    for text, sign in ((after, 1), (before, -1)):
        for found, value in metric_samples(text, f"{metric}_bucket", **labels):
            bound = float("inf") if found["le"] == "+Inf" else float(found["le"])
            buckets[bound] = buckets.get(bound, 0.0) + sign * value
    ordered = sorted(buckets.items())

    def estimate(fraction: float) -> float | None:
        """Linear interpolation inside the bucket holding the rank (as Prometheus' histogram_quantile)."""
        if count <= 0:
            return None
        rank, lower, below = fraction * count, 0.0, 0.0
        for bound, cumulative in ordered:
            if cumulative >= rank:
                if bound == float("inf"):
                    return lower
                inside = cumulative - below
                return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = bound, cumulative
        return None

    return {
        "count": int(count),
        "mean_ms": round(total / count * 1000, 3) if count else None,
        "buckets": {("+Inf" if bound == float("inf") else f"{bound:g}"): int(value) for bound, value in ordered},
        "estimated_p50_ms": None if count <= 0 else round((estimate(0.5) or 0) * 1000, 2),
        "estimated_p90_ms": None if count <= 0 else round((estimate(0.9) or 0) * 1000, 2),
        "estimated_p99_ms": None if count <= 0 else round((estimate(0.99) or 0) * 1000, 2),
    }


def _webhook_own(webhook: Any) -> tuple[float, float]:
    """(sum seconds, count) of the webhook's own admission histogram over its replicas (HTTPS on the pod IP)."""
    from tests.node.webhook import metric_total

    context = ssl.create_default_context()
    context.check_hostname = False  # the serving certificate names the Service, not the pod IP
    context.verify_mode = ssl.CERT_NONE
    total, count = 0.0, 0.0
    for pod in webhook.pods():
        with urllib.request.urlopen(f"https://{pod['status']['podIP']}:8443/metrics", context=context, timeout=10) as r:
            text = r.read().decode()
        total += metric_total(text, "wandb_kfp_webhook_admission_duration_seconds_sum")
        count += metric_total(text, "wandb_kfp_webhook_admission_duration_seconds_count")
    return total, count


def run(work_dir: Path, pairs: int = 24) -> dict[str, Any]:
    try:
        from tests.e2e.binaries import BinariesUnavailable, ensure_helm
        from tests.node import host, kfp
        from tests.node import webhook as wh
        from tests.node.argo import install
        from tests.node.binaries import ensure_node_binaries
        from tests.node.cluster import NodeCluster
        from tests.node.images import ImageUnavailable, ensure_images
        from tests.node.podtimes import PodWatch, pod_times
    except ImportError as error:
        return {"skipped": f"the node harness (tests/node) is not importable: {error}"}
    if os.geteuid() != 0:
        return {"skipped": "the node tier needs root"}
    reason = host.unsupported_reason()
    if reason:
        return {"skipped": reason}
    build = os.environ.get("WKW_BENCH_BUILD_E2E", "0") == "1"
    try:
        binaries = ensure_node_binaries(build)
        images = ensure_images(build)
        ensure_helm(build)
        webhook_images = wh.ensure_webhook_images((MINOR,))
    except (BinariesUnavailable, ImageUnavailable) as error:
        return {
            "skipped": f"node binaries or images unavailable ({error}); build them once with "
            "`python -m tests.node.prepare` or run with WKW_BENCH_BUILD_E2E=1"
        }
    result: dict[str, Any] = {"pipeline": PIPELINE, "python": MINOR, "pairs": pairs}
    cluster = NodeCluster(binaries, images)
    cluster.start()
    try:
        argo = install(cluster)
        wh.load_component_images(cluster, webhook_images.components)
        webhook = wh.install(cluster, argo, *webhook_images.webhook)
        team = webhook.team_namespace("bench")
        plain = webhook.team_namespace("bench-plain", labelled=False)
        webhook.wait_called(team.name)
        workflow = kfp.compile_v1(work_dir / "node-compiled")[PIPELINE]
        result["cluster"] = {
            "kubernetes": cluster.get_json("/version")["gitVersion"],
            "start_s": round(cluster.timings.get("total start", 0.0), 1),
            "install_s": {k: round(v, 1) for k, v in webhook.timings.items()},
        }
        before = wh.apiserver_metrics(cluster)
        own_before = _webhook_own(webhook)
        started = time.monotonic()
        with PodWatch(cluster, "workflows.argoproj.io/workflow") as watch:
            for number in range(pairs):
                order = (team, plain) if number % 2 == 0 else (plain, team)
                names = [
                    (ns, argo.submit(ns.name, kfp.as_kfp_run(workflow, run_name=f"bench {number}"))) for ns in order
                ]
                for ns, name in names:
                    done = argo.wait(ns.name, name, timeout=300)
                    if done["status"]["phase"] != "Succeeded":
                        raise RuntimeError(f"{ns.name}/{name} ended {done['status']['phase']}")
            result["runs_seconds"] = round(time.monotonic() - started, 1)
            after = wh.apiserver_metrics(cluster)
            own_after = _webhook_own(webhook)
            times = {}
            for ns in (team, plain):
                selector = "workflows.argoproj.io/workflow"
                pods = cluster.get_json(f"/api/v1/namespaces/{ns.name}/pods?labelSelector={selector}")["items"]
                times[ns.name] = [pod_times(cluster, pod, watch.seen) for pod in pods]
        injected = [t for t in times[team.name] if wh.INJECTED_ANNOTATION in t.annotations]
        untouched = times[plain.name]
        result["pods"] = {"injected": len(injected), "not_injected": len(untouched)}
        result["precise"] = watch.error is None and all(
            t.created_precise and t.containers["main"].precise for t in [*injected, *untouched]
        )
        started_injected = [t.until_started() for t in injected]
        started_plain = [t.until_started() for t in untouched]
        result["created_to_main_started"] = {
            "injected": _summary(started_injected),
            "not_injected": _summary(started_plain),
        }
        medians = (median(started_injected), median(started_plain))
        p90s = (
            percentile(sorted(v for v in started_injected if v is not None), 0.9),
            percentile(sorted(v for v in started_plain if v is not None), 0.9),
        )
        result["overhead"] = {
            "median_s": None if None in medians else round(medians[0] - medians[1], 3),  # type: ignore[operator]
            "p90_s": round(p90s[0] - p90s[1], 3),
        }
        result["shim_init_container_ran"] = _summary([t.containers[wh.SHIM_INIT_CONTAINER].ran for t in injected])
        result["shim_init_container_created_to_finished"] = _summary(
            [
                (c.finished - c.created) if c.finished and c.created else None
                for c in (t.containers[wh.SHIM_INIT_CONTAINER] for t in injected)
            ]
        )
        result["argo_init_container_ran"] = {
            "injected": _summary([t.containers["init"].ran for t in injected]),
            "not_injected": _summary([t.containers["init"].ran for t in untouched]),
        }
        result["main_ran"] = {
            "injected": _summary([t.containers["main"].ran for t in injected]),
            "not_injected": _summary([t.containers["main"].ran for t in untouched]),
        }
        result["apiserver_webhook_call"] = _histogram(
            before, after, HISTOGRAM, name=WEBHOOK_NAME, operation="CREATE", type="admit"
        )
        own_sum, own_count = own_after[0] - own_before[0], own_after[1] - own_before[1]
        result["webhook_own_handling"] = {
            "count": int(own_count),
            "mean_ms": round(own_sum / own_count * 1000, 3) if own_count else None,
        }
        log(
            f"node: {len(injected)} injected / {len(untouched)} plain pods; created->main started median "
            f"{medians[0]:.2f} s vs {medians[1]:.2f} s"
        )
    finally:
        cluster.stop()
    return result
