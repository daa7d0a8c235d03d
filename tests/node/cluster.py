"""A single-node Kubernetes cluster from real parts, started and stopped on this machine by the tests.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd + runc (Debian), the Debian
CNI plugins on a bridge this module creates, kubelet and kube-proxy (iptables mode): the same parts a
kubeadm node runs, as host processes, each in its own process group, everything under one temp dir.

Networking stays on this machine. The bridge `wkwnode0` holds the node address (the apiserver and the
kubelet listen there, so pods reach them); pods get addresses from POD_CIDR and routes to the pod and
Service ranges only (no default route); only the bridge forwards (its own `forwarding` sysctl, the
host's `ip_forward` is untouched); a mangle rule drops anything forwarded between the bridge and another
interface; pods get a resolv.conf that names no server; containerd's registry hosts point at a closed
local port, so a pull fails at once instead of leaving the machine.

Stopping removes every process (by pid: our process groups, then containerd's shims and any container
left, found through our sockets and runc root), every mount under the temp dir, the iptables rules and
chains that appeared while we ran (only KUBE-* chains, rules jumping to them, rules naming our bridge
or ranges), the bridge, the /var/log/containers links into the temp dir, and the temp dir. A machine
lock keeps one node cluster per machine (bridge, kube-proxy chains and ranges are machine-wide); a
start first cleans what a killed earlier run left.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests
import urllib3
import yaml
from kubernetes import client as k8s

from tests.e2e.binaries import ensure_helm
from tests.e2e.certs import CertificateAuthority, service_account_signing_key
from tests.e2e.cluster import LoggedProcess, _stop_process_group, log_tail, process_exists, spawn_logged
from tests.node.binaries import NodeBinaries

NODE_NAME = "wkw-node"
BRIDGE = "wkwnode0"
POD_CIDR = "10.213.0.0/24"
NODE_IP = "10.213.0.1"
SERVICE_CIDR = "10.214.0.0/24"
KUBERNETES_SERVICE_IP = "10.214.0.1"
CLUSTER_DOMAIN = "cluster.local"
SERVICE_ACCOUNT_ISSUER = f"https://kubernetes.default.svc.{CLUSTER_DOMAIN}"
TEMP_PREFIX = "wkw-node-"
MACHINE_LOCK = Path("/run/lock/wkw-node-cluster.lock")
CNI_BIN_DIR = "/usr/lib/cni"
CONTAINER_LOG_LINKS = Path("/var/log/containers")
# Paths the kubelet and containerd use whatever their flags say (the device-plugin socket dir, the log
# links, the shim socket dir): removed at stop when they did not exist before the start.
HARDCODED_PATHS = (Path("/var/lib/kubelet"), CONTAINER_LOG_LINKS, Path("/run/containerd"))
# Registries a pod's image could name; each is pointed at a closed local port (see module docstring).
BLOCKED_REGISTRIES = ("_default", "docker.io", "registry.k8s.io", "quay.io", "gcr.io", "ghcr.io", "localhost")
RULE_TAG = "wkw-node"
START_DEADLINE_SECONDS = 180.0
DRAIN_DEADLINE_SECONDS = 90.0
STOP_GRACE_SECONDS = 15.0

_live: dict[int, NodeCluster] = {}


class NodeClusterError(RuntimeError):
    """A part did not come up (the message carries the tails of every log), or stopping left something."""


def _log(message: str) -> None:
    print(f"[node-cluster] {message}", file=sys.stderr, flush=True)


def _run(*command: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(command), capture_output=True, text=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise NodeClusterError(f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()[-800:]}")
    return result


def _self_signed_healthz(port: int) -> bool:
    """/healthz of the controller-manager or scheduler: they serve it with a self-signed certificate."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        return requests.get(f"https://127.0.0.1:{port}/healthz", verify=False, timeout=3).text == "ok"


def free_port(host: str) -> int:
    """A TCP port free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# -- machine state we touch, and how to put it back ------------------------------------------------------


def _iptables_tools() -> list[tuple[str, str]]:
    """(save, command) pairs: both families, both backends (kube-proxy picks one by what it finds)."""
    tools = []
    for family in ("iptables", "ip6tables"):
        for backend in ("nft", "legacy"):
            save, command = f"{family}-{backend}-save", f"{family}-{backend}"
            if shutil.which(save) and shutil.which(command):
                tools.append((save, command))
    return tools


def iptables_snapshot() -> dict[str, str]:
    """`*-save` output per tool, to tell later which rules and chains appeared while we ran."""
    return {save: _run(save, check=False).stdout for save, _ in _iptables_tools()}


def _parse_rules(saved: str) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(chains, rules) of an iptables-save text as (table, chain) and (table, '-A ...')."""
    chains: set[tuple[str, str]] = set()
    rules: set[tuple[str, str]] = set()
    table = ""
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":"):
            chains.add((table, line[1:].split()[0]))
        elif line.startswith("-A "):
            rules.add((table, line))
    return chains, rules


def _ours(rule: str) -> bool:
    return bool(
        re.search(r"(-j|-g) KUBE-|^-A KUBE-", rule)
        or BRIDGE in rule
        or RULE_TAG in rule
        or POD_CIDR in rule
        or SERVICE_CIDR in rule
    )


def remove_new_rules(before: dict[str, str]) -> list[str]:
    """Delete rules and chains that are ours and were not in `before`; return what was removed."""
    removed = []
    for save, command in _iptables_tools():
        old_chains, old_rules = _parse_rules(before.get(save, ""))
        now = _run(save, check=False).stdout
        chains, rules = _parse_rules(now)
        for table, rule in sorted(rules - old_rules, reverse=True):
            if _ours(rule):
                _run(command, "-w", "-t", table, "-D", *shlex.split(rule)[1:], check=False)
                removed.append(f"{command} -t {table} {rule}")
        new_chains = [(t, c) for t, c in chains - old_chains if c.startswith("KUBE-")]
        for table, chain in new_chains:
            _run(command, "-w", "-t", table, "-F", chain, check=False)
        for table, chain in new_chains:
            _run(command, "-w", "-t", table, "-X", chain, check=False)
            removed.append(f"{command} -t {table} -X {chain}")
    return removed


def leftover_rules(before: dict[str, str]) -> list[str]:
    """Our rules or chains present now that were not there before."""
    left = []
    for save, _ in _iptables_tools():
        old_chains, old_rules = _parse_rules(before.get(save, ""))
        chains, rules = _parse_rules(_run(save, check=False).stdout)
        left += [f"{save}: {rule}" for _, rule in rules - old_rules if _ours(rule)]
        left += [f"{save}: chain {c}" for _, c in chains - old_chains if c.startswith("KUBE-")]
    return left


def _mounts_under(directory: Path) -> list[str]:
    """Mount points at or below `directory`, deepest first."""
    prefix = str(directory).rstrip("/") + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefix) or point == str(directory):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def _unmount_all(directory: Path) -> list[str]:
    """Unmount everything under `directory` (lazily when busy); return what is still mounted."""
    for _ in range(3):
        points = _mounts_under(directory)
        if not points:
            return []
        for point in points:
            if _run("umount", point, check=False).returncode != 0:
                _run("umount", "-l", point, check=False)
    return _mounts_under(directory)


def _remove_tree(directory: Path) -> None:
    """rmtree that refuses to descend into a mount point (a stray bind mount must never be emptied)."""
    if _mounts_under(directory):
        raise NodeClusterError(f"not removing {directory}: still mounted: {_mounts_under(directory)}")
    shutil.rmtree(directory, ignore_errors=True)


def _processes_mentioning(needle: str) -> list[int]:
    """Pids whose command line contains `needle` (our socket or temp dir path), never our own."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pid = int(cmdline.parent.name)
        if needle in text and pid != os.getpid() and process_exists(pid):
            found.append(pid)
    return found


def _kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(process_exists(pid) for pid in pids):
        time.sleep(0.1)


def _delete_bridge() -> None:
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        _run("ip", "link", "delete", BRIDGE, check=False)


def _remove_log_links(temp_dir: Path) -> None:
    """kubelet links /var/log/containers/<pod>_<ns>_<ctr>-<id>.log to the pod log dir; drop ours."""
    if not CONTAINER_LOG_LINKS.is_dir():
        return
    for link in CONTAINER_LOG_LINKS.iterdir():
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link).startswith(f"{temp_dir}/"):
                link.unlink()


SHIM_SOCKET_DIR = Path("/run/containerd/s")


def _shim_sockets() -> set[str]:
    return set(os.listdir(SHIM_SOCKET_DIR)) if SHIM_SOCKET_DIR.is_dir() else set()


def _remove_stale_shim_sockets(before: set[str]) -> None:
    listening = Path("/proc/net/unix").read_text()
    for name in _shim_sockets() - before:
        path = SHIM_SOCKET_DIR / name
        if str(path) not in listening:
            path.unlink(missing_ok=True)


def _containerd_cgroups() -> list[Path]:
    """`k8s.io` under every cgroup hierarchy: containerd's parent for pods when the kubelet gives none."""
    roots = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fstype = line.split(" - ", 1)[1].split()[0]
        if fstype in ("cgroup", "cgroup2"):
            roots.add(Path(line.split()[4]))
    return sorted(root / "k8s.io" for root in roots)


def _remove_created_cgroups(existed: list[str]) -> list[str]:
    """rmdir (children first) the containerd cgroups that were not there before; return those left."""
    left = []
    for cgroup in _containerd_cgroups():
        if str(cgroup) in existed or not cgroup.exists():
            continue
        for child in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                child.rmdir()
        with contextlib.suppress(OSError):
            cgroup.rmdir()
        if cgroup.exists():
            left.append(f"cgroup {cgroup}")
    return left


def _remove_created_paths(existed: dict[str, bool]) -> list[str]:
    """Remove the HARDCODED_PATHS we created; return those we created but could not remove."""
    left = []
    for path in HARDCODED_PATHS:
        if existed.get(str(path), True) or not path.exists():
            continue
        if _mounts_under(path):
            left.append(f"{path} (mounted below)")
            continue
        if path == SHIM_SOCKET_DIR.parent:
            # Another containerd may have started using it meanwhile: only ever remove empty dirs here.
            with contextlib.suppress(OSError):
                SHIM_SOCKET_DIR.rmdir()
                path.rmdir()
        else:
            shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            left.append(str(path))
    return left


def teardown_host(temp_dir: Path) -> list[str]:
    """Put the machine back: everything a cluster under `temp_dir` may have left. Idempotent.

    Used by `stop()` after the graceful part, and by the next start when an earlier run was killed.
    Returns what could not be removed (empty when all is clean).
    """
    runc_root = temp_dir / "runc"
    # 1. Containers that survived the drain: runc kills and deletes them (its root is ours alone).
    # The shim runs runc with --root <Root>/<containerd namespace>.
    for root in [runc_root / ns.name for ns in runc_root.iterdir()] if runc_root.is_dir() else []:
        for container in _run("runc", "--root", str(root), "list", "-q", check=False).stdout.split():
            _run("runc", "--root", str(root), "delete", "--force", container, check=False)
    # 2. Every process still naming our temp dir: containerd's shims (`-address <our socket>`), kubelet...
    _kill_pids(_processes_mentioning(f"{temp_dir}/"))
    # 3. Mounts: pod volumes (tmpfs), rootfs overlays, sandbox shm and network namespaces.
    still_mounted = _unmount_all(temp_dir)
    state_file = temp_dir / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    # 4. Shim sockets: containerd 1.6 puts them in /run/containerd/s whatever its state dir; a killed
    # shim leaves its socket. Remove the ones that appeared while we ran and nobody listens on.
    _remove_stale_shim_sockets(set(state.get("shim_sockets_before", [])))
    # 5. Network: kube-proxy's own clean-up, then whatever of ours is still there, then the bridge.
    kube_proxy = state.get("kube_proxy")
    if kube_proxy and Path(kube_proxy).exists():
        _run(kube_proxy, "--cleanup", "--v=0", check=False)
    before = state.get("iptables_before", {})
    remove_new_rules(before)
    _delete_bridge()
    _remove_log_links(temp_dir)
    problems = [f"still mounted: {point}" for point in still_mounted]
    problems += [f"could not remove {path}" for path in _remove_created_paths(state.get("paths_existed", {}))]
    problems += _remove_created_cgroups(state.get("cgroups_existed", [str(c) for c in _containerd_cgroups()]))
    problems += leftover_rules(before)
    problems += [f"process {pid} still running" for pid in _processes_mentioning(f"{temp_dir}/")]
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        problems.append(f"bridge {BRIDGE} still exists")
    return problems


def remove_stale_runs() -> None:
    """Tear down clusters of earlier runs whose owner process is gone (SIGKILLed test runners)."""
    for candidate in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        owner = candidate.name.removeprefix(TEMP_PREFIX).split("-", 1)[0]
        if owner.isdigit() and not process_exists(int(owner)) and candidate.is_dir():
            _log(f"cleaning up after a killed run: {candidate}")
            problems = teardown_host(candidate)
            if problems:
                raise NodeClusterError(f"cannot clean {candidate}: {problems}")
            _remove_tree(candidate)


@contextlib.contextmanager
def machine_lock() -> Iterator[IO[str]]:
    """One node cluster per machine: the bridge, kube-proxy's chains and the ranges are machine-wide."""
    MACHINE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    handle = MACHINE_LOCK.open("w")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"another node cluster runs on this machine; waiting for {MACHINE_LOCK}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield handle
    finally:
        handle.close()


# -- the cluster ---------------------------------------------------------------------------------------


@dataclass
class NodeCluster:
    """The whole node; `start()`/`stop()` or a `with` block. `images` (name -> (reference, OCI archive), as
    `tests.node.images.ensure_images()` returns them) are imported before the kubelet starts, and must
    hold `pause`; `load_image()` adds more later."""

    binaries: NodeBinaries
    images: dict[str, tuple[str, Path]]
    url: str = ""
    temp_dir: Path = field(default_factory=Path)
    ca_file: Path = field(default_factory=Path)
    kubeconfig: Path = field(default_factory=Path)
    token: str = field(default="", repr=False)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per step of the last start, plus `total start` and `stop`."""
    history: list[dict[str, float]] = field(default_factory=list)
    """`timings` of every start/stop cycle so far (the tier's summary prints them)."""
    ca: CertificateAuthority | None = field(default=None, repr=False)
    _processes: list[LoggedProcess] = field(default_factory=list, repr=False)
    _lock: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)
    _ports: dict[str, int] = field(default_factory=dict, repr=False)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> NodeCluster:
        """Start every part in order and return once the node is Ready and kube-proxy has synced."""
        started = time.monotonic()
        self.timings = {}
        self.history.append(self.timings)
        self._lock.enter_context(machine_lock())
        try:
            remove_stale_runs()
            self.temp_dir = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
            self.temp_dir.chmod(0o755)
            _live[id(self)] = self
            self._write_state(
                iptables_before=iptables_snapshot(),
                kube_proxy=str(self.binaries.kube_proxy),
                shim_sockets_before=sorted(_shim_sockets()),
                paths_existed={str(path): path.exists() for path in HARDCODED_PATHS},
                cgroups_existed=[str(cgroup) for cgroup in _containerd_cgroups() if cgroup.exists()],
            )
            self._step("network", self._create_bridge)
            self._step("credentials", self._write_credentials)
            self._step("etcd + kube-apiserver", self._start_control_plane)
            self._step("controller-manager + scheduler", self._start_controllers)
            self._step("containerd", self._start_containerd)
            self._step("image import", self._import_images)
            self._step("kubelet (node Ready)", self._start_kubelet)
            self._step("kube-proxy (rules synced)", self._start_kube_proxy)
            self._step("default ServiceAccount", lambda: self._wait_service_account("default"))
        except BaseException:
            self.stop(check=False)
            raise
        self.timings["total start"] = time.monotonic() - started
        _log(f"node cluster up in {self.timings['total start']:.1f}s under {self.temp_dir}")
        return self

    def stop(self, check: bool = True) -> None:
        """Drain pods through the kubelet, stop every part, put the machine back.

        Raises NodeClusterError when something is left (after removing all it could) and `check`.
        """
        if self.temp_dir == Path():
            self._lock.close()
            return
        started = time.monotonic()
        by_name = {proc.name: proc for proc in self._processes}
        for name in ("kube-controller-manager", "kube-scheduler"):
            if name in by_name:
                _stop_process_group(by_name[name].process)
        if "kubelet" in by_name and by_name["kubelet"].process.poll() is None:
            with contextlib.suppress(Exception):
                self._drain()
        for proc in reversed(self._processes):
            _stop_process_group(proc.process)
        self._processes.clear()
        problems = teardown_host(self.temp_dir)
        if not problems:
            _remove_tree(self.temp_dir)
        _live.pop(id(self), None)
        self.temp_dir = Path()
        self._lock.close()
        self.timings["stop"] = time.monotonic() - started
        if problems and check:
            raise NodeClusterError("stopping the node cluster left: " + "; ".join(problems))

    def __enter__(self) -> NodeCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _step(self, what: str, action: Callable[[], object]) -> None:
        started = time.monotonic()
        action()
        self.timings[what] = time.monotonic() - started
        _log(f"{what}: {self.timings[what]:.1f}s")

    def _write_state(self, **values: Any) -> None:
        state_file = self.temp_dir / "state.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        state.update(values)
        state_file.write_text(json.dumps(state))

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the host processes, by name."""
        return {proc.name: proc.process.pid for proc in self._processes}

    # -- network -----------------------------------------------------------------------------------

    def _create_bridge(self) -> None:
        """The bridge, the node address on it, forwarding on it alone, and the guard rule."""
        for route in json.loads(_run("ip", "-j", "route", "show", "table", "all").stdout or "[]"):
            dst = str(route.get("dst", ""))
            if dst.startswith(("10.213.", "10.214.")) and route.get("dev") != BRIDGE:
                raise NodeClusterError(f"this machine already routes {dst} (dev {route.get('dev')}); ranges clash")
        _delete_bridge()
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        # Host traffic to a ClusterIP kube-proxy has not translated yet stays on the bridge.
        _run("ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP)
        Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/forwarding").write_text("1")
        for direction in (["-i", BRIDGE, "!", "-o", BRIDGE], ["-o", BRIDGE, "!", "-i", BRIDGE]):
            _run(
                "iptables",
                "-w",
                "-t",
                "mangle",
                "-I",
                "FORWARD",
                *direction,
                "-m",
                "comment",
                "--comment",
                RULE_TAG,
                "-j",
                "DROP",
            )

    # -- credentials -------------------------------------------------------------------------------

    def _write_credentials(self) -> None:
        pki = self.temp_dir / "pki"
        pki.mkdir(mode=0o700)
        self.ca = CertificateAuthority("wkw-node-ca")
        self.ca_file = pki / "ca.crt"
        self.ca_file.write_bytes(self.ca.cert_pem)
        self.ca.issue(
            "kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
            ),
            ip_addresses=(NODE_IP, KUBERNETES_SERVICE_IP, "127.0.0.1"),
        ).write(pki, "apiserver")
        self.ca.issue("kubelet", dns_names=(NODE_NAME,), ip_addresses=(NODE_IP,)).write(pki, "kubelet")
        self.ca.issue("kube-apiserver-kubelet-client", organizations=("system:masters",), client=True).write(
            pki, "apiserver-kubelet-client"
        )
        sa_private, sa_public = service_account_signing_key()
        (pki / "sa.key").touch(mode=0o600)
        (pki / "sa.key").write_bytes(sa_private)
        (pki / "sa.pub").write_bytes(sa_public)
        users = {
            "admin": ("wkw-node-admin", "system:masters"),
            "kube-controller-manager": ("system:kube-controller-manager", ""),
            "kube-scheduler": ("system:kube-scheduler", ""),
            "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
            "kube-proxy": ("system:kube-proxy", ""),
        }
        tokens = {name: secrets.token_urlsafe(32) for name in users}
        self.token = tokens["admin"]
        lines = [f'{tokens[name]},{user},{user},"{groups}"' for name, (user, groups) in users.items()]
        (pki / "tokens.csv").touch(mode=0o600)
        (pki / "tokens.csv").write_text("\n".join(lines) + "\n")
        self._ports["apiserver"] = free_port(NODE_IP)
        self.url = f"https://{NODE_IP}:{self._ports['apiserver']}"
        for name, token in tokens.items():
            self._write_kubeconfig(self.temp_dir / f"{name}.kubeconfig", token, users[name][0])
        self.kubeconfig = self.temp_dir / "admin.kubeconfig"

    def _write_kubeconfig(self, path: Path, token: str, user: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": NODE_NAME,
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.ca_file.read_bytes()).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": user, "context": {"cluster": NODE_NAME, "user": user}}],
            "current-context": user,
        }
        path.touch(mode=0o600)
        path.write_text(json.dumps(config, indent=2))

    # -- processes ---------------------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> LoggedProcess:
        log_path = self.temp_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(exist_ok=True)
        proc = spawn_logged(name, command, log_path, self.temp_dir, env)
        self._processes.append(proc)
        return proc

    def _wait(
        self, proc: LoggedProcess | None, ready: Callable[[], bool], what: str, deadline: float | None = None
    ) -> None:
        """Poll `ready()`; fail with every log tail when `proc` exits or time runs out."""
        limit = time.monotonic() + (deadline or START_DEADLINE_SECONDS)
        while time.monotonic() < limit:
            if proc is not None and proc.process.poll() is not None:
                self._fail(f"{proc.name} exited with {proc.process.returncode} before {what}")
            with contextlib.suppress(Exception):
                if ready():
                    return
            time.sleep(0.25)
        self._fail(f"{what}: not ready after {deadline or START_DEADLINE_SECONDS:.0f}s")

    def _fail(self, reason: str) -> None:
        tails = "\n".join(
            f"----- {proc.name} ({proc.log_path}) -----\n{log_tail(proc.log_path, 25)}" for proc in self._processes
        )
        raise NodeClusterError(f"{reason}\n{tails}")

    def _start_control_plane(self) -> None:
        client, peer = free_port("127.0.0.1"), free_port("127.0.0.1")
        etcd_url = f"http://127.0.0.1:{client}"
        etcd = self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=wkw-node",
                f"--data-dir={self.temp_dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=wkw-node=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait(etcd, lambda: requests.get(f"{etcd_url}/health", timeout=2).json()["health"] == "true", "etcd")
        pki = self.temp_dir / "pki"
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={NODE_IP}",
                f"--advertise-address={NODE_IP}",
                f"--secure-port={self._ports['apiserver']}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={self.ca_file}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={self.ca_file}",
                "--kubelet-preferred-address-types=InternalIP",
                "--allow-privileged=true",
                "--v=1",
            ],
        )
        self._wait(
            apiserver,
            lambda: requests.get(f"{self.url}/readyz", verify=str(self.ca_file), timeout=5).text == "ok",
            "kube-apiserver /readyz",
        )

    def _start_controllers(self) -> None:
        pki = self.temp_dir / "pki"
        for name, binary, extra in (
            (
                "kube-controller-manager",
                self.binaries.kube_controller_manager,
                [
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={self.ca_file}",
                    "--use-service-account-credentials=true",
                    f"--cluster-name={NODE_NAME}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                ],
            ),
            ("kube-scheduler", self.binaries.kube_scheduler, []),
        ):
            kubeconfig = self.temp_dir / f"{name}.kubeconfig"
            self._ports[name] = free_port("127.0.0.1")
            self._spawn(
                name,
                [
                    str(binary),
                    f"--kubeconfig={kubeconfig}",
                    f"--authentication-kubeconfig={kubeconfig}",
                    f"--authorization-kubeconfig={kubeconfig}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={self._ports[name]}",
                    f"--cert-dir={self.temp_dir / name}",
                    "--leader-elect=false",
                    "--v=1",
                    *extra,
                ],
            )
        for proc in self._processes[-2:]:
            port = self._ports[proc.name]
            self._wait(
                proc,
                lambda port=port: _self_signed_healthz(port),
                f"{proc.name} /healthz",
            )

    # -- containerd, images, kubelet, kube-proxy ---------------------------------------------------

    @property
    def containerd_socket(self) -> Path:
        """containerd's gRPC socket (for `ctr --address`)."""
        return self.temp_dir / "containerd" / "containerd.sock"

    def _start_containerd(self) -> None:
        base = self.temp_dir / "containerd"
        (base / "certs.d").mkdir(parents=True)
        for registry in BLOCKED_REGISTRIES:
            (base / "certs.d" / registry).mkdir()
            (base / "certs.d" / registry / "hosts.toml").write_text('server = "http://127.0.0.1:1"\n')
        cni_conf = self.temp_dir / "cni" / "net.d"
        cni_conf.mkdir(parents=True)
        conflist = {
            "cniVersion": "1.0.0",
            "name": "wkw-node",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    # The node address is already on the bridge; isGateway would also turn on the
                    # host-wide ip_forward, which this tier leaves alone.
                    "isGateway": False,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                        "routes": [{"dst": SERVICE_CIDR, "gw": NODE_IP}],
                        "dataDir": str(self.temp_dir / "cni" / "ipam"),
                    },
                }
            ],
        }
        (cni_conf / "10-wkw-node.conflist").write_text(json.dumps(conflist, indent=2))
        pause_ref = self.images["pause"][0]
        config = f"""
version = 2
root = "{base / "root"}"
state = "{base / "state"}"
oom_score = 0

[grpc]
  address = "{self.containerd_socket}"

[ttrpc]
  address = "{self.containerd_socket}.ttrpc"

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_ref}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{self.temp_dir / "runc"}"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{base / "certs.d"}"
"""
        (base / "config.toml").write_text(config)
        containerd = self._spawn("containerd", ["containerd", "--config", str(base / "config.toml")])
        self._wait(containerd, lambda: self.ctr("version", check=False).returncode == 0, "containerd")

    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run `ctr` against this cluster's containerd, in the CRI namespace (`k8s.io`)."""
        return _run(
            "ctr",
            "--address",
            str(self.containerd_socket),
            "--namespace",
            "k8s.io",
            *args,
            check=check,
            timeout=timeout,
        )

    def load_image(self, archive: Path) -> None:
        """Import an OCI archive (`podman save --format oci-archive`) so pods can use its image
        without a pull (names stay as saved, e.g. `localhost/NAME:TAG`)."""
        self.ctr("images", "import", str(archive))

    def _import_images(self) -> None:
        for _, archive in self.images.values():
            self.load_image(archive)

    def image_refs(self) -> list[str]:
        """Image references containerd holds."""
        return self.ctr("images", "list", "-q").stdout.split()

    def _start_kubelet(self) -> None:
        pki = self.temp_dir / "pki"
        resolv = self.temp_dir / "resolv.conf"
        # No server: a pod's lookups stay in the pod (glibc tries its own loopback and fails fast).
        resolv.write_text("options ndots:1 attempts:1 timeout:1\n")
        self._ports["kubelet"] = free_port(NODE_IP)
        self._ports["kubelet-healthz"] = free_port("127.0.0.1")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": self._ports["kubelet"],
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self._ports["kubelet-healthz"],
            "tlsCertFile": str(pki / "kubelet.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.ca_file)},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "podLogsDir": str(self.temp_dir / "pod-logs"),
            "resolvConf": str(resolv),
            "clusterDomain": CLUSTER_DOMAIN,
            "serializeImagePulls": False,
            "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "oomScoreAdj": 0,
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
            "staticPodPath": "",
        }
        config_file = self.temp_dir / "kubelet.yaml"
        config_file.write_text(yaml.safe_dump(config))
        kubelet = self._spawn(
            "kubelet",
            [
                str(self.binaries.kubelet),
                f"--config={config_file}",
                f"--kubeconfig={self.temp_dir / 'kubelet.kubeconfig'}",
                f"--root-dir={self.temp_dir / 'kubelet'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
        )
        self._wait(kubelet, self._node_ready, f"node {NODE_NAME} Ready")

    def _node_ready(self) -> bool:
        node = self.get_json(f"/api/v1/nodes/{NODE_NAME}")
        return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))

    def _start_kube_proxy(self) -> None:
        self._ports["kube-proxy-healthz"] = free_port("127.0.0.1")
        self._ports["kube-proxy-metrics"] = free_port("127.0.0.1")
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.temp_dir / "kube-proxy.kubeconfig")},
            "hostnameOverride": NODE_NAME,
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "nodePortAddresses": [f"{NODE_IP}/32"],
            "healthzBindAddress": f"127.0.0.1:{self._ports['kube-proxy-healthz']}",
            "metricsBindAddress": f"127.0.0.1:{self._ports['kube-proxy-metrics']}",
            "oomScoreAdj": 0,
            # Zero leaves the host's conntrack sysctls as they are.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
                "udpTimeout": "0s",
                "udpStreamTimeout": "0s",
            },
            "iptables": {"localhostNodePorts": False, "syncPeriod": "30s", "minSyncPeriod": "0s"},
        }
        config_file = self.temp_dir / "kube-proxy.yaml"
        config_file.write_text(yaml.safe_dump(config))
        proxy = self._spawn("kube-proxy", [str(self.binaries.kube_proxy), f"--config={config_file}", "--v=1"])
        port = self._ports["kube-proxy-healthz"]
        self._wait(proxy, lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=3).ok, "kube-proxy")

    def _wait_service_account(self, namespace: str, name: str = "default") -> None:
        self._wait(
            None,
            lambda: bool(self.get_json(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}")),
            f"ServiceAccount {namespace}/{name}",
        )

    # -- stopping ----------------------------------------------------------------------------------

    def _drain(self) -> None:
        """Force-delete every pod and let the kubelet stop them (CNI DEL, volumes, logs) before it goes."""
        with self.api_client() as api_client:
            core = k8s.CoreV1Api(api_client)
            for pod in core.list_pod_for_all_namespaces().items:
                with contextlib.suppress(k8s.ApiException):
                    core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
        deadline = time.monotonic() + DRAIN_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            tasks = self.ctr("tasks", "list", "-q", check=False, timeout=30).stdout.split()
            # StopPodSandbox (CNI DEL) removes the sandbox's network namespace; removal comes later (GC).
            namespaces = list((self.temp_dir / "containerd" / "state").glob("*/netns/*"))
            if not tasks and not namespaces:
                return
            time.sleep(0.5)
        _log("drain: containers still running after the deadline; runc removes them")

    # -- clients -----------------------------------------------------------------------------------

    def api_client(self, token: str | None = None) -> k8s.ApiClient:
        """A `kubernetes` python client for this cluster, as the admin unless another token is given."""
        configuration = k8s.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.ca_file)
        configuration.api_key = {"authorization": token or self.token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        return k8s.ApiClient(configuration)

    def get_json(self, path: str) -> dict[str, Any]:
        """GET an API path as the admin; {} on 404."""
        response = requests.get(
            f"{self.url}{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            verify=str(self.ca_file),
            timeout=10,
        )
        if response.status_code == 404:
            return {}
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl as the admin; raise with its output when `check` and it fails."""
        command = [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(command, input=input_text, capture_output=True, text=True, check=False, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the pinned helm (the e2e tier's) against this cluster as the admin."""
        command = [str(ensure_helm(build=False)), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def apply(self, *objects: dict[str, Any]) -> None:
        """`kubectl apply` (server-side) of manifests given as dicts."""
        self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "-",
            input_text=yaml.safe_dump_all(objects),
        )

    def create_namespace(
        self, name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
    ) -> None:
        """Create a namespace and wait for the controller-manager to give it its `default` ServiceAccount."""
        metadata: dict[str, Any] = {"name": name, "labels": labels or {}, "annotations": annotations or {}}
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})
        self._wait_service_account(name)

    def wait_for(self, ready: Callable[[], bool], what: str, timeout: float = 300) -> None:
        """Poll `ready()` until true; fail with the node's log tails after `timeout` seconds."""
        self._wait(None, ready, what, deadline=timeout)

    def wait_pod_done(self, namespace: str, name: str, timeout: float = 300) -> dict[str, Any]:
        """Wait until a pod is Succeeded or Failed; return it."""
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        self.wait_for(lambda: self.get_json(path)["status"]["phase"] in ("Succeeded", "Failed"), f"pod {name}", timeout)
        return self.get_json(path)

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str:
        """A container's log, fetched by the apiserver from the kubelet (as `kubectl logs` does)."""
        return self.kubectl("logs", "-n", namespace, pod, *(["-c", container] if container else [])).stdout


@atexit.register
def _stop_all() -> None:
    """Backstop for interpreter exit after Ctrl-C or a crash in a fixture's teardown."""
    for cluster in list(_live.values()):
        with contextlib.suppress(Exception):
            cluster.stop(check=False)
