"""Build the vendored-wandb payload: OUT/site/py3.X per CPython minor, plus OUT/site/manifest.json.

Component images run any CPython from 3.8 to 3.13 and usually have no wandb, so the shim carries one per
minor: real wheels fetched by pip for that minor and this machine's architecture (manylinux/glibc).
Files identical across minors (most of wandb, its Go core binary, pure-Python dependencies) are stored
once as hardlinks, which `install` keeps when it copies the payload into a pod.

pip evaluates dependency markers (`python_version < '3.10'`) against the interpreter running it, not
the `--python-version` target, so each minor is resolved with a real interpreter of that minor when one
is on the machine, and otherwise the missing marker-conditional dependencies are added afterwards.

Runs only in the webhook image / on a build machine (Python 3.10+); never copied into pods.
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import os
import platform as platform_module
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from . import contract

#: Bump when the layout or build recipe changes, so cached payloads are rebuilt.
PAYLOAD_FORMAT = 1
#: wandb per CPython minor: the newest release whose wheels declare support for that minor.
WANDB_PINS: Dict[str, str] = {
    "3.8": "wandb==0.24.2",
    "3.9": "wandb==0.26.1",
    "3.10": "wandb==0.31.0",
    "3.11": "wandb==0.31.0",
    "3.12": "wandb==0.31.0",
    "3.13": "wandb==0.31.0",
}
SUPPORTED_MINORS = tuple(WANDB_PINS)
SUPPORTED_PLATFORMS = ("x86_64", "aarch64")
#: Newest manylinux glibc level accepted; wandb's own wheels need 2.28 (its Go core binary).
NEWEST_GLIBC_MINOR = 28
OLDEST_GLIBC_MINOR = 5

_MARKER_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_WHEEL_TAG_GLIBC = re.compile(r"manylinux_(\d+)_(\d+)_|manylinux(1|2010|2014)_")
_LEGACY_MANYLINUX = {"1": (2, 5), "2010": (2, 12), "2014": (2, 17)}


def host_platform() -> str:
    """This machine's architecture in manylinux spelling."""
    machine = platform_module.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def platform_tags(arch: str) -> List[str]:
    """Every manylinux tag pip should accept for arch, newest first."""
    if arch not in SUPPORTED_PLATFORMS:
        raise ValueError(f"unsupported platform {arch!r}; expected one of {SUPPORTED_PLATFORMS}")
    tags = [f"manylinux_2_{glibc}_{arch}" for glibc in range(NEWEST_GLIBC_MINOR, OLDEST_GLIBC_MINOR - 1, -1)]
    tags.append(f"manylinux2014_{arch}")
    if arch == "x86_64":
        tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    return tags


def find_interpreter(minor: str) -> Optional[Path]:
    """A real CPython `minor` on this machine (PATH, then pyenv), used so pip evaluates markers right."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == minor:
        return Path(sys.executable)
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for candidate in sorted(pyenv.glob(f"versions/{minor}.*/bin/python{minor}"), reverse=True):
        return candidate
    found = shutil.which(f"python{minor}")
    if found and "/shims/" not in found:  # a pyenv shim may name a version that is not selected
        return Path(found)
    return None


def _pip_install(python: Path, target: Path, minor: str, arch: str, requirements: Sequence[str]) -> None:
    abi = "cp" + minor.replace(".", "")
    command = [
        str(python),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--no-warn-script-location",
        "--target",
        str(target),
        "--python-version",
        minor,
        "--implementation",
        "cp",
        "--abi",
        abi,
        "--only-binary=:all:",
    ]
    for tag in platform_tags(arch):
        command += ["--platform", tag]
    completed = subprocess.run([*command, *requirements], capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(
            f"pip install {' '.join(requirements)} for py{minor}/{arch} failed:\n{completed.stderr[-3000:]}"
        )


def _dist_infos(site: Path) -> List[Path]:
    return sorted(site.glob("*.dist-info"))


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _target_environment(minor: str, arch: str) -> Dict[str, str]:
    major, minor_number = minor.split(".")
    return {
        "python_version": minor,
        "python_full_version": f"{minor}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "os_name": "posix",
        "platform_system": "Linux",
        "platform_machine": arch,
        "extra": "",
        "implementation_version": f"{major}.{minor_number}.0",
    }


def missing_requirements(site: Path, minor: str, arch: str) -> List[str]:
    """Requirements of the installed dists that hold for the target minor but are not installed."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # the webhook image has pip (which vendors packaging) but maybe not packaging
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[assignment]

    installed = {}
    requires: List[str] = []
    for info in _dist_infos(site):
        metadata = email.parser.Parser().parsestr((info / "METADATA").read_text(encoding="utf-8"))
        installed[_normalize(metadata["Name"])] = metadata["Version"]
        requires += metadata.get_all("Requires-Dist") or []
    environment = _target_environment(minor, arch)
    missing = []
    for text in requires:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        if _normalize(requirement.name) not in installed:
            missing.append(str(requirement).split(";")[0].strip())
    return sorted(set(missing))


def _merge_tree(src: Path, dst: Path) -> None:
    for entry in src.iterdir():
        if not (dst / entry.name).exists():
            shutil.move(str(entry), str(dst / entry.name))


def build_minor(site: Path, minor: str, arch: str) -> Dict[str, object]:
    """pip-install the pinned wandb for one minor into site (new dir); return its manifest entry."""
    python = find_interpreter(minor)
    resolver = "native" if python is not None else "cross"
    pip_python = python or Path(sys.executable)
    _pip_install(pip_python, site, minor, arch, [WANDB_PINS[minor]])
    for _round in range(4):
        missing = missing_requirements(site, minor, arch)
        if not missing:
            break
        with tempfile.TemporaryDirectory(dir=site.parent) as extra:
            _pip_install(pip_python, Path(extra), minor, arch, missing)
            _merge_tree(Path(extra), site)
    else:
        raise RuntimeError(f"py{minor}: requirements still missing after 4 rounds: {missing}")
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts whose shebang names the build python
    versions = {}
    for info in _dist_infos(site):
        name, _, version = info.name[: -len(".dist-info")].rpartition("-")
        versions[_normalize(name)] = version
    return {
        "wandb": versions.get("wandb", ""),
        "resolver": resolver,
        "glibc_min": "%d.%d" % required_glibc(site),
        "distributions": dict(sorted(versions.items())),
    }


def required_glibc(site: Path) -> tuple[int, int]:
    """Lowest glibc every installed wheel can run on (each wheel needs the oldest of its own tags)."""
    needed = (2, 0)
    for info in _dist_infos(site):
        wheel = info / "WHEEL"
        if not wheel.is_file():
            continue
        levels = []
        for line in wheel.read_text().splitlines():
            if not line.startswith("Tag:"):
                continue
            match = _WHEEL_TAG_GLIBC.search(line)
            if match is None:
                levels.append((2, 0))  # a pure or non-linux tag: no glibc floor
            elif match.group(3):
                levels.append(_LEGACY_MANYLINUX[match.group(3)])
            else:
                levels.append((int(match.group(1)), int(match.group(2))))
        if levels:
            needed = max(needed, min(levels))
    return needed


def _files(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not path.is_symlink():
                yield path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dedupe(roots: Sequence[Path]) -> Dict[str, int]:
    """Replace files with identical content and mode under roots by hardlinks to the first copy."""
    first: Dict[tuple[str, int], Path] = {}
    before = after = linked = 0
    for root in roots:
        for path in _files(root):
            info = path.stat()
            before += info.st_size
            key = (_sha256(path), info.st_mode & 0o777)
            original = first.get(key)
            if original is None:
                first[key] = path
                after += info.st_size
                continue
            temporary = path.with_name(path.name + ".wkw-link")
            os.link(original, temporary)
            os.replace(temporary, path)
            linked += 1
    return {
        "bytes_before_dedupe": before,
        "bytes_after_dedupe": after,
        "linked_files": linked,
        "unique_files": len(first),
    }


def build_payload(
    out_dir: os.PathLike[str] | str, minors: Sequence[str] = SUPPORTED_MINORS, platform: Optional[str] = None
) -> Dict[str, object]:
    """Build OUT/site (replacing any previous one only once the new one is whole); return the manifest."""
    out = Path(out_dir)
    arch = platform or host_platform()
    unknown = [minor for minor in minors if minor not in WANDB_PINS]
    if unknown:
        raise ValueError(f"unsupported Python minor(s) {unknown}; supported: {list(SUPPORTED_MINORS)}")
    platform_tags(arch)  # validates arch before any download
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".site-build-", dir=out))
    try:
        entries: Dict[str, Dict[str, object]] = {}
        for minor in minors:
            entries[minor] = build_minor(staging / f"py{minor}", minor, arch)
        per_minor_bytes = {}
        for minor in minors:
            files = list(_files(staging / f"py{minor}"))
            per_minor_bytes[minor] = (len(files), sum(path.stat().st_size for path in files))
        totals = dedupe([staging / f"py{minor}" for minor in minors])
        for minor in minors:
            entries[minor]["files"], entries[minor]["bytes"] = per_minor_bytes[minor]
        manifest: Dict[str, object] = {
            "format": PAYLOAD_FORMAT,
            "platform": arch,
            "glibc_min": max(
                (entry["glibc_min"] for entry in entries.values()),
                key=lambda text: tuple(int(part) for part in str(text).split(".")),
                default="2.0",
            ),
            "minors": entries,
            **totals,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        staging.chmod(0o755)  # mkdtemp makes it 0700; the payload must be readable by any component user
        site = out / contract.SITE_SUBDIR
        if site.exists():
            retired = Path(tempfile.mkdtemp(prefix=".site-old-", dir=out))
            os.replace(site, retired / "site")
            shutil.rmtree(retired)
        os.replace(staging, site)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
