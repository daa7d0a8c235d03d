"""Build the vendored-wandb payload: OUT/site/py3.X per CPython minor, plus OUT/site/manifest.json.

Component images run any CPython from 3.7 to 3.13 and usually have no wandb, so the shim carries one per
minor: real wheels fetched by pip for that minor and this machine's architecture (manylinux/glibc).
Files identical across minors (most of wandb, its Go core binary, pure-Python dependencies) are stored
once as hardlinks, which `install` keeps when it copies the payload into a pod.

Where the wandb for a minor needs a newer protobuf than images commonly load first (kfp 2.0.x imports
protobuf 3.20 before the component runs), OUT/site/py3.X-compat holds a second wandb that works with the
image's protobuf: wandb 0.18.7 (protobuf 3.19+ on every minor) without a protobuf of its own, so the one
the image already loaded is the one it uses.

pip evaluates dependency markers (`python_version < '3.10'`) against the interpreter running it, not
the `--python-version` target, so each minor is resolved with a real interpreter of that minor when one
is on the machine, and otherwise the missing marker-conditional dependencies are added afterwards.

Runs only in the webhook image / on a build machine (Python 3.10+); never copied into pods. Just over 400
lines, kept whole: fetching, pruning, deduplicating and the manifest are steps of one build.
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

from webhook.shim import contract

#: Bump when the layout or build recipe changes, so cached payloads are rebuilt.
PAYLOAD_FORMAT = 3
#: wandb per CPython minor: the newest release whose wheels declare support for that minor.
WANDB_PINS: Dict[str, str] = {
    "3.7": "wandb==0.18.7",
    "3.8": "wandb==0.24.2",
    "3.9": "wandb==0.26.1",
    "3.10": "wandb==0.31.0",
    "3.11": "wandb==0.31.0",
    "3.12": "wandb==0.31.0",
    "3.13": "wandb==0.31.0",
}
SUPPORTED_MINORS = tuple(WANDB_PINS)
#: The compat wandb: accepts protobuf >= 3.19 (< 6) on every minor its py3 wheel installs on.
COMPAT_PIN = "wandb==0.18.7"
#: Minors whose pinned wandb refuses protobuf 3.19-4.21 (0.26.1: > 4.21.0; 0.31.0: >= 5), so they get a
#: compat site. 3.7 is pinned to the compat release itself, and 3.8's 0.24.2 accepts protobuf >= 3.12.
COMPAT_MINORS = ("3.9", "3.10", "3.11", "3.12", "3.13")
#: Suffix of a compat site's directory: site/py3.X-compat.
COMPAT_SUFFIX = contract.COMPAT_SITE_SUFFIX
#: Distributions never put in a compat site: the image's own copy must be the one wandb uses.
COMPAT_EXCLUDED = ("protobuf",)
SUPPORTED_PLATFORMS = ("x86_64", "aarch64")
#: Files of the wandb wheels a component's run never loads, left out of every pod's copy (25-30 MB per
#: minor, a third of a narrowed copy): the Parquet reader wandb-core loads only for the public API's
#: history downloads (`run.history()` / scans, never while logging), and the Intel XPU metrics helper of
#: wandb 0.26. A component's own `wandb.Api()` history download from the vendored copy would fail; without
#: the webhook such a component has no wandb at all.
PRUNED_FILES = ("wandb/bin/librust_parquet_ffi.so", "wandb/bin/wandb-xpu")
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
    if tuple(int(part) for part in minor.split(".")) < (3, 8):
        abi += "m"  # CPython 3.7 and older are built with pymalloc: their ABI tag is cp37m
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


def missing_requirements(site: Path, minor: str, arch: str, exclude: Sequence[str] = ()) -> List[str]:
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
        name = _normalize(requirement.name)
        if name not in installed and name not in {_normalize(item) for item in exclude}:
            missing.append(str(requirement).split(";")[0].strip())
    return sorted(set(missing))


def requirement_floor(site: Path, dist: str, requirement_name: str, minor: str, arch: str) -> Optional[List[object]]:
    """[version, inclusive] of the lowest `requirement_name` that `dist` in site accepts on the target minor."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[assignment]

    for info in _dist_infos(site):
        metadata = email.parser.Parser().parsestr((info / "METADATA").read_text(encoding="utf-8"))
        if _normalize(metadata["Name"]) != _normalize(dist):
            continue
        environment = _target_environment(minor, arch)
        for text in metadata.get_all("Requires-Dist") or []:
            requirement = Requirement(text)
            if _normalize(requirement.name) != _normalize(requirement_name):
                continue
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            floors = [
                [spec.version, spec.operator == ">="] for spec in requirement.specifier if spec.operator in (">=", ">")
            ]
            return max(floors, key=lambda item: _version_key(str(item[0]))) if floors else None
    return None


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _merge_tree(src: Path, dst: Path) -> None:
    for entry in src.iterdir():
        if not (dst / entry.name).exists():
            shutil.move(str(entry), str(dst / entry.name))


def build_minor(site: Path, minor: str, arch: str, compat: bool = False) -> Dict[str, object]:
    """pip-install the pinned wandb for one minor into site (new dir); return its manifest entry.

    compat=True installs COMPAT_PIN without the distributions in COMPAT_EXCLUDED (protobuf).
    """
    python = find_interpreter(minor)
    resolver = "native" if python is not None else "cross"
    pip_python = python or Path(sys.executable)
    exclude = COMPAT_EXCLUDED if compat else ()
    if compat:
        _pip_install(pip_python, site, minor, arch, [COMPAT_PIN, "--no-deps"])
    else:
        _pip_install(pip_python, site, minor, arch, [WANDB_PINS[minor]])
    for _round in range(4):
        missing = missing_requirements(site, minor, arch, exclude)
        if not missing:
            break
        with tempfile.TemporaryDirectory(dir=site.parent) as extra:
            _pip_install(pip_python, Path(extra), minor, arch, missing)
            _merge_tree(Path(extra), site)
    else:
        raise RuntimeError(f"py{minor}: requirements still missing after 4 rounds: {missing}")
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts whose shebang names the build python
    for relative in PRUNED_FILES:
        (site / relative).unlink(missing_ok=True)
    versions = {}
    for info in _dist_infos(site):
        name, _, version = info.name[: -len(".dist-info")].rpartition("-")
        versions[_normalize(name)] = version
    leaked = [name for name in exclude if _normalize(name) in versions]
    if leaked or (compat and (site / "google" / "protobuf").exists()):
        raise RuntimeError(f"py{minor} compat site must not hold {leaked or ['google.protobuf']}")
    return {
        "wandb": versions.get("wandb", ""),
        "resolver": resolver,
        "glibc_min": "{}.{}".format(*required_glibc(site)),
        "protobuf_min": requirement_floor(site, "wandb", "protobuf", minor, arch),
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


def site_dirs(site: Path, minor: str) -> List[Path]:
    """The directories under site a pod running `minor` needs: py3.X and, when there is one, py3.X-compat."""
    return [path for path in (site / f"py{minor}", site / f"py{minor}{COMPAT_SUFFIX}") if path.is_dir()]


def install_size(site: Path, minor: str) -> Dict[str, int]:
    """Files and bytes `shim install --python minor` copies from site (hardlinked files counted once):
    `files`/`bytes` without the compat site, `compat_files`/`compat_bytes` with it (`--compat`)."""
    primary = _unique_size(site_dirs(site, minor)[:1])
    both = _unique_size(site_dirs(site, minor))
    return {"files": primary[0], "bytes": primary[1], "compat_files": both[0], "compat_bytes": both[1]}


def _unique_size(roots: Sequence[Path]) -> tuple[int, int]:
    seen = set()
    files = size = 0
    for root in roots:
        for path in _files(root):
            info = path.stat()
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            files += 1
            size += info.st_size
    return files, size


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
        names = []  # site directory names, primary then compat
        for minor in minors:
            entries[minor] = build_minor(staging / f"py{minor}", minor, arch)
            names.append(f"py{minor}")
            if minor in COMPAT_MINORS:
                entries[minor]["compat"] = build_minor(staging / f"py{minor}{COMPAT_SUFFIX}", minor, arch, compat=True)
                names.append(f"py{minor}{COMPAT_SUFFIX}")
        for minor in minors:
            for entry, name in ((entries[minor], f"py{minor}"), (entries[minor].get("compat"), f"py{minor}-compat")):
                if isinstance(entry, dict):
                    files = list(_files(staging / name))
                    entry["files"], entry["bytes"] = len(files), sum(path.stat().st_size for path in files)
        totals = dedupe([staging / name for name in names])
        for minor in minors:
            entries[minor]["install"] = install_size(staging, minor)
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
