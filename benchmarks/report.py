"""Render results.json as results.md: the machine first, then the targets, then each section's tables."""

from __future__ import annotations

from typing import Any


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    sections = results["sections"]
    rows: list[dict[str, Any]] = []

    def add(name: str, goal: str, measured: Any, met: bool | None, note: str = "") -> None:
        rows.append({"target": name, "goal": goal, "measured": measured, "met": met, "note": note})

    http = sections.get("http", {})
    if "closed_loop" in http:
        worst_c, worst = max(
            ((c, v["ratio_ours_over_floor"]["p99_ms"]) for c, v in http["closed_loop"].items()),
            key=lambda item: item[1] or 0,
        )
        per_c = ", ".join(f"c={c}: {fmt(v['ratio_ours_over_floor']['p99_ms'])}" for c, v in http["closed_loop"].items())
        add(
            "p99 ours/floor (closed loop)",
            "<= 1.5 at every concurrency",
            f"worst {fmt(worst)} at c={worst_c}",
            (worst or 0) <= 1.5,
            per_c,
        )
    if "fixed_rate" in http:
        p99 = http["fixed_rate"]["ours"]["p99_ms"]
        add(
            f"p99 at {http['fixed_rate']['rate']:.0f} req/s (open loop)",
            "<= 10 ms",
            f"{fmt(p99)} ms",
            p99 is not None and p99 <= 10,
            f"floor {fmt(http['fixed_rate']['floor']['p99_ms'])} ms",
        )
    if "under_attack" in http:
        attack = http["under_attack"]
        add(
            f"every review answered at {http['fixed_rate']['rate']:.0f} req/s while 1,000 connections stall",
            "all answered, RSS bounded",
            f"{attack['requests_ok']}/{attack['requests_sent']} answered, p99 {fmt(attack['p99_ms'])} ms, "
            f"worker RSS peak {fmt(attack['worker_rss_peak_mb'], 0)} MB",
            attack["requests_ok"] == attack["requests_sent"],
            f"{attack['held_max']} held at once; the server cut {attack['cut_by_server']} at their deadline",
        )
    api = sections.get("apiserver", {})
    if "added_p50_ms" in api:
        add(
            "added pod-create p50 (real apiserver)",
            "<= 5 ms",
            f"{fmt(api['added_p50_ms'])} ms",
            api["added_p50_ms"] <= 5,
            f"p99 added {fmt(api['added_p99_ms'])} ms; a no-op floor webhook adds "
            f"{fmt(api.get('floor_added_p50_ms'))} ms p50",
        )
    shim = sections.get("shim", {})
    component = shim.get("component", {})
    if "ratio_shim_over_hand" in component:
        add(
            "shim / hand-written wandb (component wall time)",
            "<= 1.1x",
            fmt(component["ratio_shim_over_hand"], 3),
            component["ratio_shim_over_hand"] <= 1.1,
            f"per-round median {fmt(component['ratio_shim_over_hand_per_round_median'], 3)}",
        )
    boot = shim.get("bootstrap_inactive", {}).get("python -c pass")
    if boot:
        add(
            "inactive bootstrap per interpreter start",
            "< 5 ms",
            f"{fmt(boot['added_ms'])} ms",
            boot["added_ms"] < 5,
            f"with a .pyc: {fmt(boot['added_with_pyc_ms'])} ms",
        )
    pods = (shim.get("per_pod_copy") or {}).get("pods") or {}
    narrowed = {label: v for label, v in pods.items() if v["args"] and "--compat" not in v["args"]}
    if narrowed:
        worst_label, worst = max(narrowed.items(), key=lambda item: item[1]["share_of_every_minor"])
        add(
            "python:3.X pod: bytes copied vs every minor",
            "<= 1/3",
            f"worst {worst['share_of_every_minor']:.0%} ({worst_label})",
            worst["share_of_every_minor"] <= 1 / 3,
            "pods that pip-install packages also copy the compat wandb: "
            + ", ".join(f"{v['share_of_every_minor']:.0%}" for v in pods.values() if "--compat" in v["args"]),
        )
    memory = sections.get("memory", {})
    if "worst_growth_pct_from_warm" in memory:
        add(
            f"worker RSS growth over {memory['requests_measured']} requests",
            "< 10 %",
            f"{fmt(memory['worst_growth_pct_from_warm'])} %",
            memory["worst_growth_pct_from_warm"] is not None and memory["worst_growth_pct_from_warm"] < 10,
            "from post-warm-up RSS; from idle: "
            + ", ".join(f"{fmt(v)} %" for v in memory["growth_pct_from_idle"].values()),
        )
    return rows


def _machine(results: dict[str, Any]) -> list[str]:
    machine = results["machine"]
    lines = ["# wandb-kfp-webhook benchmarks", ""]
    lines.append(
        f"Run {results['started_at']} - {results['finished_at']} ({fmt(results['wall_seconds'], 0)} s), "
        f"`{' '.join(['python -m benchmarks.run', *results['argv']])}`."
    )
    lines += ["", "## Machine", ""]
    lines.append(
        f"- CPUs: {machine['cpu_count']} ({machine['cpu_model']}), memory {machine['memory_gib']} GiB, "
        f"kernel {machine['kernel']}"
    )
    lines.append(
        f"- load average (1/5/15 min) at start: {machine['load_average_at_start']}, at end: "
        f"{results['load_average_at_end']}; per section: "
        + ", ".join(f"{name} {section.get('load_average_after')}" for name, section in results["sections"].items())
        + ". The machine is shared: absolute figures are noisy, the ratios (same run, alternating) less so"
    )
    lines.append(f"- Python {machine['python']}, {machine['openssl']}")
    lines.append("- packages: " + ", ".join(f"{k} {v}" for k, v in machine["packages"].items()))
    lines.append("- tools: " + ", ".join(f"{k}: {v or 'absent'}" for k, v in machine["tools"].items()))
    lines += [
        "",
        "Every figure is the median of repeated runs; every ratio is the median of per-repetition ratios "
        "of runs made back to back (order alternated).",
    ]
    lines += ["", "## Targets", "", "| target | goal | measured | met | note |", "| --- | --- | --- | --- | --- |"]
    for row in results["targets"]:
        met = {True: "yes", False: "**NO**", None: "n/a"}[row["met"]]
        lines.append(f"| {row['target']} | {row['goal']} | {row['measured']} | {met} | {row['note']} |")
    for name, section in results["sections"].items():
        if "skipped" in section:
            lines += ["", f"## {name}: skipped", "", f"Skipped: {section['skipped']}"]
    return lines


def _http(http: dict[str, Any]) -> list[str]:
    if "closed_loop" not in http:
        return []
    mix = http["mix"]
    lines = ["", "## 1. Admission webhook under HTTPS load (loopback)", ""]
    lines.append(
        f"Load generator: {http['load_generator']}. "
        f"Server: `python -m tests.support.serve_app` (webhook.server.runner), {http['server']['workers']} workers "
        f"({http['server']['worker_class']}), {http['server']['tls']}; the floor is the same server "
        "with a WSGI app that drains the body and answers a canned AdmissionReview response."
    )
    lines.append(
        f"Mix per cycle: {mix['requests_per_cycle']} reviews from tests/fixtures/pods "
        f"({mix['opted_in']} opted in by pod label), bodies {mix['body_bytes_min']}-"
        f"{mix['body_bytes_max']} bytes (median {mix['body_bytes_median']})."
    )
    lines += [
        "",
        "| conc. | server | p50 ms | p90 ms | p99 ms | req/s | server CPU ms/req | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c, values in http["closed_loop"].items():
        for server in ("ours", "floor"):
            v = values[server]
            lines.append(
                f"| {c} | {server} | {fmt(v['p50_ms'])} | {fmt(v['p90_ms'])} | {fmt(v['p99_ms'])} | "
                f"{fmt(v['rps'], 0)} | {fmt(v['server_cpu_ms_per_request'], 3)} | {v['errors']} |"
            )
        r = values["ratio_ours_over_floor"]
        lines.append(
            f"| {c} | **ours/floor** | {fmt(r['p50_ms'])} | {fmt(r['p90_ms'])} | **{fmt(r['p99_ms'])}** | "
            f"{fmt(r['rps'])} | {fmt(r['server_cpu_ms_per_request'])} | |"
        )
    hs = http["highest_sustained_rps"]
    lines += [
        "",
        f"Highest sustained rate (closed loop, any concurrency): ours {fmt(hs['ours'], 0)} req/s, "
        f"floor {fmt(hs['floor'], 0)} req/s.",
    ]
    fr = http.get("fixed_rate")
    if fr:
        lines += [
            "",
            f"Fixed rate {fr['rate']:.0f} req/s for {fr['duration_s']:.0f} s ({fr['client']}):",
            "",
            "| server | p50 ms | p90 ms | p99 ms | max ms | achieved req/s | client send lag p99 ms | errors |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for server in [name for name in ("ours", "floor") if name in fr]:
            v = fr[server]
            lines.append(
                f"| {server} | {fmt(v['p50_ms'])} | {fmt(v['p90_ms'])} | {fmt(v['p99_ms'])} | "
                f"{fmt(v['max_ms'])} | {fmt(v['achieved_rps'], 0)} | {fmt(v['client_send_lag_p99_ms'])} | "
                f"{v['errors']} |"
            )
        for key, label in (("ratio_ours_over_floor", "ours/floor"),):
            if key in fr:
                r = fr[key]
                lines.append(
                    f"| {label} | {fmt(r['p50_ms'])} | {fmt(r['p90_ms'])} | {fmt(r['p99_ms'])} | "
                    f"{fmt(r['max_ms'])} | | | |"
                )
    attack = http.get("under_attack")
    if attack:
        lines += [
            "",
            f"The same fixed rate while tests.support.hostile holds {attack['hostile_connections']} connections "
            "that never complete a request (raw TLS bytes, idle after the handshake, half a request line, "
            "headers dribbled a byte every 0.5 s, a body that never ends), reconnecting whenever the server "
            f"cuts one: {attack['held_max']} held at once, {attack['cut_by_server']} cut by the server at their "
            f"deadline, {attack['requests_ok']} of {attack['requests_sent']} reviews answered, "
            f"p50 {fmt(attack['p50_ms'])} ms, p90 {fmt(attack['p90_ms'])} ms, **p99 {fmt(attack['p99_ms'])} ms**, "
            f"max {fmt(attack['max_ms'])} ms; worker RSS peak {fmt(attack['worker_rss_peak_mb'], 0)} MB.",
        ]
    if "inprocess_review" in http:
        lines += [
            "",
            "In-process `admission.review()` per fixture (no HTTP/TLS; median of 5 batches of 40):",
            "",
            "| fixture | body bytes | outcome | ms |",
            "| --- | --- | --- | --- |",
        ]
        for label, v in http["inprocess_review"].items():
            lines.append(f"| {label} | {v['body_bytes']} | {v['outcome']} | {fmt(v['review_ms'], 3)} |")
    prof = http.get("inprocess_profile")
    if prof:
        lines += [
            "",
            f"cProfile of `review()` over {prof['reviews_profiled']} reviews of the mix (share of total time):",
            "",
            "| function | calls | self % | cumulative % |",
            "| --- | --- | --- | --- |",
        ]
        for row in prof["top_cumulative"][:16]:
            lines.append(f"| `{row['function']}` | {row['calls']} | {row['self_pct']} | {row['cumulative_pct']} |")
    spy = http.get("profile_under_load")
    if spy and "holding_gil" in spy:
        for mode, title in (
            ("holding_gil", "samples of the thread holding the GIL (where Python CPU goes)"),
            ("all_threads", "samples of every busy thread (also time waiting for locks, GIL, I/O)"),
        ):
            view = spy[mode]
            if not view.get("busy_samples"):
                continue
            lines += [
                "",
                f"py-spy on both workers under wrk c=32, {title}, {view['busy_samples']} samples:",
                "",
                "| frame (inclusive) | % | hottest self frames | % |",
                "| --- | --- | --- | --- |",
            ]
            inclusive, leaf = view["top_inclusive"][:18], view["top_self"][:18]
            for index in range(max(len(inclusive), len(leaf))):
                a = inclusive[index] if index < len(inclusive) else {"frame": "", "pct": ""}
                b = leaf[index] if index < len(leaf) else {"frame": "", "pct": ""}
                lines.append(f"| `{a['frame']}` | {a['pct']} | `{b['frame']}` | {b['pct']} |")
    elif spy:
        lines += ["", f"py-spy: {spy.get('skipped')}"]
    return lines


def _apiserver(api: dict[str, Any]) -> list[str]:
    if "with_webhook" not in api:
        return []
    lines = ["", "## 2. Pod create on a real kube-apiserver", ""]
    lines.append(
        f"kube-apiserver {api['apiserver']} + etcd (tests/e2e harness), each webhook registered for one "
        f"namespace; {api['rounds']} rounds x {api['pairs_per_round']} alternating create triples of "
        f"fixture pods ({api['creates_injected']}/{api['creates_with_webhook']} creates through ours injected)."
    )
    lines += ["", "| | p50 ms | p99 ms | mean ms |", "| --- | --- | --- | --- |"]
    for key in ("with_webhook", "with_floor_webhook", "without_webhook"):
        v = api[key]
        lines.append(f"| {key.replace('_', ' ')} | {fmt(v['p50_ms'])} | {fmt(v['p99_ms'])} | {fmt(v['mean_ms'])} |")
    lines.append(f"| **added by ours** | **{fmt(api['added_p50_ms'])}** | {fmt(api['added_p99_ms'])} | |")
    lines.append(f"| added by the floor webhook | {fmt(api['floor_added_p50_ms'])} | | |")
    lines.append(
        f"\nRatio p50 with/without: {fmt(api['ratio_p50'])}. The floor webhook (`benchmarks.floor_app:echo_app`, "
        "same server and TLS, answers a canned one-annotation patch without parsing) shows what any "
        "webhook on this stack costs the apiserver; the rest is ours. The webhook's own handling "
        f"(its latency histogram, /metrics) averaged {fmt(api['webhook_app_mean_ms'], 3)} ms over "
        f"{api['webhook_app_reviews']} reviews; the apiserver used "
        f"{api['apiserver_to_webhook_connections']} keep-alive connection(s) to it."
    )
    return lines


def _shim(shim: dict[str, Any]) -> list[str]:
    if not shim or "skipped" in shim:
        return []
    lines = ["", "## 3. Runtime shim", ""]
    component = shim.get("component", {})
    if "median_s" in component:
        m = component["median_s"]
        lines.append(
            f"Trivial KFP v2 component via kfp.local SubprocessRunner(use_venv=False), kfp 2.17.3, "
            f"wandb 0.31.0 offline, {component['rounds']} rounds (alternating):"
        )
        lines += ["", "| variant | wall s | vs none | W&B runs written |", "| --- | --- | --- | --- |"]
        for key, label in (
            ("none", "no W&B"),
            ("hand", "hand-written wandb.init/log/finish"),
            ("shim", "shim (no code change)"),
        ):
            lines.append(
                f"| {label} | {fmt(m[key], 3)} | {fmt(m[key] / m['none'])}x | {component['wandb_runs_written'][key]} |"
            )
        lines.append(
            f"\nshim / hand-written: **{fmt(component['ratio_shim_over_hand'], 3)}** (per-round "
            f"median {fmt(component['ratio_shim_over_hand_per_round_median'], 3)})."
        )
    elif "component" in shim:
        lines.append(f"Component run skipped: {component.get('skipped')}")
    boot = shim.get("bootstrap_inactive")
    if boot:
        lines += [
            "",
            f"Inactive bootstrap ({boot['tool']}, {boot['runs_per_command']} runs x "
            f"{boot['repetitions']} repetitions; `with` = as in a pod: read-only shim volume, no .pyc, "
            "so sitecustomize.py is compiled at each start):",
            "",
            "| command | without ms | with ms | added ms | with .pyc ms | added with .pyc ms |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for label in ("python -c pass", "python hello.py"):
            v = boot[label]
            lines.append(
                f"| `{label}` | {fmt(v['without_ms'])} | {fmt(v['with_ms'])} | **{fmt(v['added_ms'])}** | "
                f"{fmt(v['with_pyc_ms'])} | {fmt(v['added_with_pyc_ms'])} |"
            )
    init = shim.get("init_container")
    if init:
        lines += [
            "",
            "Init container: `wandb-kfp-webhook shim install DIR` into an empty dir (page cache warm):",
            "",
            "| variant | seconds | files | bytes (apparent) | bytes on disk (hardlinks once) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for key, v in init.items():
            if "skipped" in v:
                lines.append(f"| {key} | skipped: {v['skipped']} | | | |")
            else:
                lines.append(
                    f"| {key} | {fmt(v['seconds_median'], 3)} | {v['files']} | {v['bytes']:,} | {v['disk_bytes']:,} |"
                )
    per_pod = shim.get("per_pod_copy") or {}
    if "pods" in per_pod:
        lines += [
            "",
            "Init container per pod: the `shim install` arguments the webhook gives a pod with that main image, "
            "run with the cached payload (page cache warm; bytes on disk count hardlinks once):",
            "",
            "| pod image | install args | seconds | files | bytes on disk | of every minor | sizeLimit |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for label, v in per_pod["pods"].items():
            lines.append(
                f"| {label} (`{v['image']}`) | `{' '.join(v['args']) or '(every minor)'}` | "
                f"{fmt(v['seconds_median'], 3)} | {v['files']} | {v['disk_bytes']:,} | "
                f"{v['share_of_every_minor']:.0%} | {v['size_limit']} |"
            )
    elif per_pod:
        lines.append(f"\nInit container per pod skipped: {per_pod.get('skipped')}")
    return lines


def _memory(memory: dict[str, Any]) -> list[str]:
    if "points" not in memory:
        return []
    lines = ["", "## 4. Memory per worker", ""]
    lines.append(
        f"Fresh server, wrk c={memory['connections']}, {memory['requests_total']} requests in total "
        f"({memory['errors']} errors, workers restarted: {memory['workers_restarted']}); "
        f"floor workers idle: {memory['floor_idle_rss_kib']} KiB."
    )
    pids = list(memory["points"][0]["rss_kib"])
    lines += [
        "",
        "| after requests | " + " | ".join(f"worker {pid} RSS KiB (PSS)" for pid in pids) + " |",
        "| --- |" + " --- |" * len(pids),
    ]
    for point in memory["points"]:
        cells = [f"{point['rss_kib'].get(pid)} ({point['pss_kib'].get(pid)})" for pid in pids]
        lines.append(f"| {point['requests']} | " + " | ".join(cells) + " |")
    lines.append(
        f"\nGrowth from post-warm-up: {memory['growth_pct_from_warm']} %; from idle: "
        f"{memory['growth_pct_from_idle']} %."
    )
    return lines


def _seconds_row(label: str, v: dict[str, Any]) -> str:
    if not v.get("n"):
        return f"| {label} | 0 | | | | |"
    return (
        f"| {label} | {v['n']} | **{fmt(v['median_s'], 3)}** | {fmt(v['p90_s'], 3)} | {fmt(v['mean_s'], 3)} | "
        f"{fmt(v['min_s'], 3)}-{fmt(v['max_s'], 3)} |"
    )


def _node(node: dict[str, Any]) -> list[str]:
    if "created_to_main_started" not in node:
        return []
    cluster = node["cluster"]
    lines = ["", "## 5. A KFP component pod on a real node", ""]
    if node.get("run"):
        lines += [f"Run {node['run']['started_at']}, `python -m benchmarks.run {' '.join(node['run']['argv'])}`.", ""]
    lines.append(
        f"tests/node's single-node cluster (kubelet, containerd, kube-proxy, Argo in-cluster, MinIO; Kubernetes "
        f"{cluster['kubernetes']}), the chart installed by `helm install` with the `make image` image "
        f"(Deployment Ready {fmt(cluster['install_s'].get('helm install to Deployment Ready'), 1)} s after "
        f"`helm install`). The KFP v1 pipeline `{node['pipeline']}` (one `create_component_from_func` step on "
        f"`python:{node['python']}`, compiled by kfp 1.8.22) ran {node['pairs']} times in a namespace labelled "
        f"`wandb.ai/inject=enabled` and {node['pairs']} times in an unlabelled one, one run of each at a time "
        f"(alternating which is submitted first), {fmt(node['runs_seconds'], 0)} s in all: "
        f"{node['pods']['injected']} injected pods, {node['pods']['not_injected']} not. Created = when a watch "
        "on the apiserver first saw the pod; container times from containerd's nanosecond records "
        f"({'all of them' if node['precise'] else 'where present, else the API seconds'})."
    )
    lines += [
        "",
        "| per pod | pods | median s | p90 s | mean s | range s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    started = node["created_to_main_started"]
    lines.append(_seconds_row("created -> main started, injected", started["injected"]))
    lines.append(_seconds_row("created -> main started, not injected", started["not_injected"]))
    lines.append(
        _seconds_row("shim init container (`shim install --python`), start -> exit", node["shim_init_container_ran"])
    )
    lines.append(_seconds_row("shim init container, created -> exit", node["shim_init_container_created_to_finished"]))
    lines.append(_seconds_row("Argo `init` container, injected pods", node["argo_init_container_ran"]["injected"]))
    lines.append(_seconds_row("Argo `init` container, other pods", node["argo_init_container_ran"]["not_injected"]))
    lines.append(_seconds_row("`main` ran (the component), injected: records offline", node["main_ran"]["injected"]))
    lines.append(_seconds_row("`main` ran (the component), not injected", node["main_ran"]["not_injected"]))
    overhead = node["overhead"]
    lines += [
        "",
        f"**Pod start overhead per injected pod: {fmt(overhead['median_s'], 2)} s at the median, "
        f"{fmt(overhead['p90_s'], 2)} s at p90** (injected minus not injected, created -> main started).",
    ]
    call = node["apiserver_webhook_call"]
    own = node["webhook_own_handling"]
    buckets = ", ".join(f"<= {bound} s: {count}" for bound, count in call["buckets"].items())
    lines += [
        "",
        f"The webhook call as the apiserver measured it (`apiserver_admission_webhook_admission_duration_seconds`, "
        f"namespace webhook, CREATE, the difference of two scrapes): {call['count']} calls "
        f"({call['count'] / max(1, node['pods']['injected']):.1f} per injected pod: once the webhook has added "
        "its init container, the ServiceAccount admission plugin mounts the token into it, and that change makes "
        "the apiserver call the webhook again, `reinvocationPolicy: IfNeeded`; the second call finds the pod "
        "injected and changes nothing), **mean "
        f"{fmt(call['mean_ms'])} ms**; estimated from its buckets p50 {fmt(call['estimated_p50_ms'])} ms, p90 "
        f"{fmt(call['estimated_p90_ms'])} ms, p99 {fmt(call['estimated_p99_ms'])} ms (cumulative counts: {buckets}). "
        f"The webhook's own handling of the same calls (its /metrics, both replicas): {own['count']} reviews, "
        f"mean {fmt(own['mean_ms'])} ms; the rest is the apiserver's client, TLS and the Service hop.",
    ]
    return lines


SECTION_RENDERERS = {
    "http": ("## 1.", lambda s: _http(s)),
    "apiserver": ("## 2.", lambda s: _apiserver(s)),
    "shim": ("## 3.", lambda s: _shim(s)),
    "memory": ("## 4.", lambda s: _memory(s)),
    "node": ("## 5.", lambda s: _node(s)),
}


def _replace_block(markdown: str, heading: str, block: list[str]) -> str:
    """Replace the block starting at the line that starts with `heading` (up to the next `## ` line) by
    `block`; insert it before `## Notes` (or at the end) when there is none."""
    lines = markdown.rstrip("\n").split("\n")
    body = list(block)
    while body and body[0] == "":
        body.pop(0)
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        start = next((i for i, line in enumerate(lines) if line == "## Notes"), len(lines))
        end = start
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    new = [*lines[:start], *body, *([""] if end < len(lines) else []), *lines[end:]]
    return "\n".join(new).rstrip("\n") + "\n"


def splice(markdown: str, results: dict[str, Any], sections: list[str], with_targets: bool) -> str:
    """results.md with the given sections re-rendered from `results` and a line saying when they ran."""
    for name in sections:
        heading, renderer = SECTION_RENDERERS[name]
        section = results["sections"][name]
        block = renderer(section) or ["", f"{heading} {name}: skipped", "", f"Skipped: {section.get('skipped')}"]
        markdown = _replace_block(markdown, heading, block)
    if with_targets:
        rows = ["## Targets", "", "| target | goal | measured | met | note |", "| --- | --- | --- | --- | --- |"]
        for row in results["targets"]:
            met = {True: "yes", False: "**NO**", None: "n/a"}[row["met"]]
            rows.append(f"| {row['target']} | {row['goal']} | {row['measured']} | {met} | {row['note']} |")
        markdown = _replace_block(markdown, "## Targets", rows)
    lines = markdown.split("\n")
    for run in results.get("partial_runs", [])[-1:]:
        machine = run["machine"]
        note = (
            f"Rerun since: {', '.join(run['sections'])} on {run['started_at']} "
            f"(`{' '.join(['python -m benchmarks.run', *run['argv']])}`{', --quick' if run['quick'] else ''}; "
            f"{machine['cpu_count']} CPUs ({machine['cpu_model']}), kernel {machine['kernel']}, load average at "
            f"start {machine['load_average_at_start']}); every other section is the run above."
        )
        at = next((i for i, line in enumerate(lines) if line.startswith("Run ")), 1)
        if at + 2 < len(lines) and lines[at + 2].startswith("Rerun since: "):
            lines[at + 2] = note
        else:
            lines[at + 1 : at + 1] = ["", note]
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    sections = results["sections"]
    lines = _machine(results)
    lines += _http(sections.get("http", {}))
    lines += _apiserver(sections.get("apiserver", {}))
    lines += _shim(sections.get("shim", {}))
    lines += _memory(sections.get("memory", {}))
    lines += _node(sections.get("node", {}))
    notes = results.get("notes")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"
