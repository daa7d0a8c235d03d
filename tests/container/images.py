"""The images of the container tier, built here without a registry and cached by their inputs.

    from tests.container.images import ensure_webhook_image, ensure_component_image
    webhook = ensure_webhook_image()        # BuiltImage(name="localhost/wandb-kfp-webhook:0.1.0-<key>", archive=...)
    component = ensure_component_image("3.8")   # localhost/wkw-component:py3.8-<key>, kfp 2.9.0 preinstalled

- Base root filesystems come from Debian packages (mmdebstrap, the host's bookworm mirror) and become images
  with `podman import`: `wkw-debian` (runtime libraries, no Python) and `wkw-debian-python` (Debian's
  python3 3.11 and venv), the stand-in for `python:3.11-slim`.
- The webhook image is the project's Dockerfile, built by podman (buildah) with `PYTHON_IMAGE` set to
  `wkw-debian-python` and no network: a wheelhouse downloaded on the host and the cached vendored-wandb
  payload (tests.shim.support.payload_dir) are mounted into the build (image-build.sh --wheelhouse /
  --payload-from). The plain Dockerfile still builds alone on a machine with a registry.
- Component images, one per CPython minor: Debian's python3 for 3.11 (in a venv, as many images do), the
  CPython builds this machine has (pyenv) copied into `wkw-debian` at /usr/local for the others (the layout
  of the official python images), and `none` (no Python at all). Each has kfp preinstalled by the same pip
  command the KFP v2 pod runs (`kfp==X --no-deps`), so that step is satisfied offline, plus six (the v1
  fixtures' packages_to_install).

Every image is in podman's local storage as `localhost/<name>:<tag>` and in an OCI archive under
`cache_root()/images/archives`, loadable with `podman load -i` and `ctr -n k8s.io images import`. A
second call with the same inputs only checks that both exist (an archive reloads a wiped store).

`python -m tests.container.images [webhook|components|all] [--dist DIR]` builds them; `make image` runs
`webhook --dist dist`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.container.podman import (
    GLOBAL_FLAGS,
    ULIMITS,
    ensure_tools,
    image_exists,
    image_size,
    load_archive,
    log,
    nice,
    podman,
    run_in,
    save_archive,
)
from tests.support.venvs import cache_lock, cache_root, find_python

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip's vendored copy of the same parser
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[2]
#: Bump when a recipe below changes in a way its inputs do not show.
RECIPE_VERSION = 1
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: dpkg leaves documentation, manual pages and translations out (as Debian's slim images do).
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
)
#: What CPython's extension modules link against (ldd of lib-dynload), plus certificates and netbase.
RUNTIME_PACKAGES = (
    "ca-certificates",
    "netbase",
    "libssl3",
    "libffi8",
    "libsqlite3-0",
    "zlib1g",
    "libbz2-1.0",
    "liblzma5",
    "libreadline8",
    "libncursesw6",
    "libtinfo6",
    "libuuid1",
    "libexpat1",
    "libgdbm6",
    "libgdbm-compat4",
    "libnsl2",
    "libtirpc3",
    "libcrypt1",
)
BASES = {
    "wkw-debian": RUNTIME_PACKAGES,
    "wkw-debian-python": (*RUNTIME_PACKAGES, "python3", "python3-venv"),
}
IMAGE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")

WEBHOOK_REPOSITORY = "localhost/wandb-kfp-webhook"
COMPONENT_REPOSITORY = "localhost/wkw-component"
#: Where the webhook build sees the wheelhouse and the payload (their keys are in the path, so podman's
#: layer cache, which hashes build arguments but not mounted files, sees a change).
BUILD_MOUNT = "/wkw-build"
#: Where the image holds the laid-out shim (the init container copies it; Settings.shim_image_layout_path).
SHIM_IN_IMAGE = "/opt/wandb-kfp-webhook/shim"
#: The webhook venv's Python: the one of the `wkw-debian-python` base (bookworm's python3).
WEBHOOK_PYTHON_MINOR = "3.11"
#: Packages a v1 fixture installs at run time (packages_to_install); preinstalled so pip is satisfied offline.
V1_PACKAGES = ("six==1.16.0",)
#: The requirement KFP v2 adds next to kfp in its pip step (`--no-deps`).
KFP_TYPING_REQUIREMENT = 'typing-extensions>=3.7.4,<5; python_version<"3.9"'


@dataclass(frozen=True)
class ComponentRecipe:
    """How the component image of one CPython minor is made."""

    minor: str  # "3.11", or "none" for the image without Python
    python: str  # "debian" (bookworm's python3, in a venv), "copied" (this machine's CPython), "none"
    kfp: str | None  # the kfp release preinstalled: the newest that supports the minor
    note: str = ""


#: One component image per CPython minor the shim is tested on, plus one without Python. kfp 2.17 needs
#: Python 3.9+: 3.7 gets kfp 2.7.0 (KFP 2.0-2.7 default to python:3.7), 3.8 kfp 2.9.0 (2.8-2.9: python:3.8).
COMPONENT_RECIPES: dict[str, ComponentRecipe] = {
    "3.7": ComponentRecipe("3.7", "copied", "2.7.0", "the KFP v1 default base image's Python"),
    "3.8": ComponentRecipe("3.8", "copied", "2.9.0"),
    "3.11": ComponentRecipe("3.11", "debian", "2.17.3", "Debian's python3 in a venv at /opt/venv"),
    "3.13": ComponentRecipe("3.13", "copied", "2.17.3"),
    "none": ComponentRecipe("none", "none", None, "no Python: the shim must be a clean no-op"),
}
COMPONENT_MINORS = tuple(minor for minor in COMPONENT_RECIPES if minor != "none")


@dataclass(frozen=True)
class BuiltImage:
    """An image in podman's local storage and its OCI archive (podman load / ctr -n k8s.io images import)."""

    name: str
    archive: Path
    key: str
    info: dict[str, str] = field(default_factory=dict, compare=False)


def _digest(parts: Iterable[str | bytes]) -> str:
    sha = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        sha.update(len(data).to_bytes(8, "big"))
        sha.update(data)
    return sha.hexdigest()[:12]


def images_dir() -> Path:
    path = cache_root() / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


def archive_path(name: str) -> Path:
    """Where the OCI archive of localhost/NAME:TAG is cached."""
    repository, tag = name.rsplit(":", 1)
    folder = images_dir() / "archives"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{repository.rsplit('/', 1)[-1]}_{tag}.oci.tar"


def _ensure(name: str, key: str, build, info: dict[str, str] | None = None) -> BuiltImage:  # type: ignore[no-untyped-def]
    """The image `name` in local storage and its archive: reuse, reload from the archive, or build once."""
    archive = archive_path(name)
    built = BuiltImage(name, archive, key, info or {})
    if archive.is_file() and image_exists(name):
        return built
    ensure_tools()
    with cache_lock(f"image-{archive.name}"):
        if not image_exists(name):
            if archive.is_file():
                log(f"loading {name} from {archive}")
                load_archive(archive, name)
            else:
                started = time.monotonic()
                log(f"building {name}")
                build()
                log(f"built {name} in {time.monotonic() - started:.0f} s")
        if not archive.is_file():
            save_archive(name, archive)
    return built


# --- Debian root filesystems ------------------------------------------------------------------------------
def debian_sources(suite: str = SUITE) -> list[str]:
    """One-line apt sources for `suite` and its -updates/-security, from the host's apt configuration."""
    lines: list[str] = []
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for stanza in re.split(r"\n\s*\n", sources.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ")):
                    name, _, value = line.partition(":")
                    fields[name.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            for uri in fields.get("uris", "").split():
                for dist in fields.get("suites", "").split():
                    if dist == suite or dist.startswith(suite + "-"):
                        lines.append(f"deb {uri} {dist} {fields.get('components', 'main')}")
    listing = Path("/etc/apt/sources.list")
    if not lines and listing.is_file():
        for line in listing.read_text().splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "deb" and words[2].split("-")[0] == suite:
                lines.append(" ".join(words))
    return lines or [f"deb {DEFAULT_MIRROR} {suite} main"]


def _base_key(name: str) -> str:
    return _digest(
        [str(RECIPE_VERSION), SUITE, platform.machine(), *BASES[name], *DPKG_EXCLUDES, *IMAGE_ENV, *debian_sources()]
    )


def base_image_name(name: str) -> str:
    return f"localhost/{name}:{SUITE}-{_base_key(name)}"


def ensure_base_image(name: str) -> BuiltImage:
    """`wkw-debian` or `wkw-debian-python`: mmdebstrap --variant=minbase, then podman import."""
    image = base_image_name(name)

    def build() -> None:
        work = images_dir() / "rootfs"
        work.mkdir(parents=True, exist_ok=True)
        rootfs = work / f"{name}-{_base_key(name)}.tar"
        command = ["mmdebstrap", "--variant=minbase", "--include=" + ",".join(BASES[name])]
        command += [f"--dpkgopt={option}" for option in DPKG_EXCLUDES]
        command += [SUITE, str(rootfs), *debian_sources()]
        result = subprocess.run(nice(command), capture_output=True, text=True, check=False, timeout=1800)
        if result.returncode != 0:
            raise RuntimeError(f"mmdebstrap failed:\n{result.stderr[-3000:]}")
        changes = [arg for env in IMAGE_ENV for arg in ("--change", f"ENV {env}")]
        try:
            podman("import", "--quiet", *changes, "--change", 'CMD ["/bin/sh"]', str(rootfs), image)
        finally:
            rootfs.unlink(missing_ok=True)

    return _ensure(image, _base_key(name), build, {"packages": " ".join(BASES[name])})


# --- podman build ---------------------------------------------------------------------------------------
def podman_build(
    context: Path,
    tag: str,
    containerfile: Path | None = None,
    build_args: dict[str, str] | None = None,
    volumes: Sequence[tuple[Path, str]] = (),
    extra_tags: Sequence[str] = (),
) -> str:
    """podman build with no network and this machine's runtime settings; returns the build log."""
    command = ["podman", *GLOBAL_FLAGS, "build", "--network=none", *ULIMITS]
    if containerfile is not None:
        command += ["-f", str(containerfile)]
    for name, value in (build_args or {}).items():
        command += ["--build-arg", f"{name}={value}"]
    for source, target in volumes:
        command += ["-v", f"{source}:{target}:ro"]
    for name in (tag, *extra_tags):
        command += ["-t", name]
    result = subprocess.run(
        nice([*command, str(context)]),
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise RuntimeError(f"podman build of {tag} failed:\n{(result.stdout + result.stderr)[-5000:]}")
    return result.stdout + result.stderr


def _pip(python: Path | str, *args: str) -> None:
    command = [str(python), "-m", "pip", *args, "--quiet", "--disable-pip-version-check"]
    result = subprocess.run(nice(command), capture_output=True, text=True, check=False, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")


def _wheelhouse(label: str, key: str, fill) -> Path:  # type: ignore[no-untyped-def]
    """A cached folder of wheels, filled once on the host (which reaches PyPI) and mounted into builds."""
    folder = images_dir() / "wheels" / f"{label}-{key}"
    marker = folder / ".complete"
    if marker.is_file():
        return folder
    with cache_lock(f"wheels-{label}-{key}"):
        if not marker.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            log(f"downloading wheels for {label} into {folder}")
            fill(folder)
            marker.write_text("\n".join(sorted(path.name for path in folder.glob("*.whl"))) + "\n")
    return folder


# --- the webhook image --------------------------------------------------------------------------------
def project_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def _webhook_sources() -> list[Path]:
    """What the Dockerfile's build reads (everything .dockerignore lets through)."""
    files = [REPO / name for name in ("Dockerfile", ".dockerignore", "image-build.sh", "pyproject.toml", "README.md")]
    files += sorted(
        path
        for path in (REPO / "webhook").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )
    return files


def webhook_wheelhouse() -> Path:
    """The wheels image-build.sh installs (the project's dependencies, pip, setuptools), for CPython 3.11."""
    with (REPO / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)
    requirements = [*project["project"]["dependencies"], *project["build-system"]["requires"], "pip", "wheel"]
    key = _digest([str(RECIPE_VERSION), WEBHOOK_PYTHON_MINOR, platform.machine(), *requirements])

    def fill(folder: Path) -> None:
        _pip(
            sys.executable,
            "download",
            "--dest",
            str(folder),
            "--only-binary=:all:",
            "--python-version",
            WEBHOOK_PYTHON_MINOR,
            *requirements,
        )

    return _wheelhouse(f"webhook-py{WEBHOOK_PYTHON_MINOR}", key, fill)


def payload_dir() -> Path:
    """The cached vendored-wandb payload the shim tests build (built on first use)."""
    from tests.shim.support import payload_dir as cached_payload

    return cached_payload()


def webhook_image_key() -> str:
    base = base_image_name("wkw-debian-python")
    wheels = webhook_wheelhouse()
    payload = payload_dir()
    parts: list[str | bytes] = [str(RECIPE_VERSION), base, wheels.name, payload.name]
    for path in _webhook_sources():
        parts += [str(path.relative_to(REPO)), path.read_bytes()]
    return _digest(parts)


def ensure_webhook_image() -> BuiltImage:
    """The project's Dockerfile built on `wkw-debian-python`, offline: localhost/wandb-kfp-webhook:<version>-<key>."""
    ensure_tools()
    base = ensure_base_image("wkw-debian-python")
    wheels = webhook_wheelhouse()
    payload = payload_dir()
    key = webhook_image_key()
    name = f"{WEBHOOK_REPOSITORY}:{project_version()}-{key}"
    info = {"base": base.name, "wheelhouse": str(wheels), "payload": str(payload)}

    def build() -> None:
        wheels_at = f"{BUILD_MOUNT}/{wheels.name}"
        payload_at = f"{BUILD_MOUNT}/{payload.name}"
        podman_build(
            REPO,
            name,
            containerfile=REPO / "Dockerfile",
            build_args={"PYTHON_IMAGE": base.name, "WKW_WHEELHOUSE": wheels_at, "WKW_PAYLOAD_FROM": payload_at},
            volumes=[(wheels, wheels_at), (payload, payload_at)],
        )

    return _ensure(name, key, build, info)


# --- component images -----------------------------------------------------------------------------------
def _kfp_requirements(recipe: ComponentRecipe) -> list[str]:
    assert recipe.kfp is not None
    return [f"kfp=={recipe.kfp}", KFP_TYPING_REQUIREMENT, *V1_PACKAGES]


def _host_python(recipe: ComponentRecipe) -> Path:
    found = find_python(recipe.minor)
    if found is None:
        raise LookupError(f"CPython {recipe.minor} is not on this machine (pyenv or PATH)")
    return found


def component_wheelhouse(recipe: ComponentRecipe) -> Path:
    """kfp (built from its sdist by that minor's interpreter), typing-extensions and six, as wheels."""
    python = _host_python(recipe)
    requirements = _kfp_requirements(recipe)
    key = _digest([str(RECIPE_VERSION), recipe.minor, *requirements])

    def fill(folder: Path) -> None:
        _pip(python, "wheel", "--no-deps", "--use-pep517", "--wheel-dir", str(folder), *requirements)

    return _wheelhouse(f"component-py{recipe.minor}", key, fill)


def _pip_install_line(recipe: ComponentRecipe) -> str:
    """The pip command KFP v2 runs in every executor pod, offline from the mounted wheelhouse, plus six."""
    quoted = " ".join(f"'{requirement}'" for requirement in _kfp_requirements(recipe))
    return (
        "PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels PIP_DISABLE_PIP_VERSION_CHECK=1 "
        f"python3 -m pip install --quiet --no-warn-script-location --no-deps {quoted}"
    )


#: Parts of the standard library a component image does not need (the slim images leave them out too).
_PRUNED = {"test", "tests", "idlelib", "tkinter", "turtledemo"}
#: What stays in this machine's site-packages: pip and setuptools, nothing the machine added (.pth files).
_KEPT_SITE = ("pip", "setuptools", "pkg_resources", "_distutils_hack", "distutils-precedence.pth")


def _stage_python(prefix: Path, minor: str, target: Path) -> None:
    """Copy this machine's CPython (prefix) to target as it will sit at /usr/local in the image."""
    stdlib = prefix / "lib" / f"python{minor}"

    def ignore(directory: str, names: list[str]) -> set[str]:
        here = Path(directory)
        if here == prefix:
            return {name for name in names if name not in ("bin", "lib", "include")}
        if here == stdlib / "site-packages":
            return {name for name in names if not name.startswith(_KEPT_SITE)}
        if here == stdlib:
            return {name for name in names if name in _PRUNED or name.startswith("config-")}
        if stdlib in here.parents:
            return {name for name in names if name in _PRUNED}
        return set()

    shutil.copytree(prefix, target, symlinks=True, ignore=ignore)
    # Scripts (pip, pip3, ...) name the interpreter by its path here: point them at /usr/local.
    old = f"#!{prefix}/bin/".encode()
    for script in (target / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            data = script.read_bytes()
            if data.startswith(old):
                script.write_bytes(b"#!/usr/local/bin/" + data[len(old) :])


def _component_key(recipe: ComponentRecipe) -> tuple[str, list[str | bytes]]:
    if recipe.python == "none":
        base = base_image_name("wkw-debian")
        return _digest([str(RECIPE_VERSION), base, "none"]), [base]
    wheels = component_wheelhouse(recipe)
    if recipe.python == "debian":
        base = base_image_name("wkw-debian-python")
        parts: list[str | bytes] = [str(RECIPE_VERSION), base, wheels.name, _containerfile(recipe, base)]
        return _digest(parts), parts
    base = base_image_name("wkw-debian")
    python = _host_python(recipe)
    version = subprocess.run(
        [str(python), "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    parts = [str(RECIPE_VERSION), base, wheels.name, str(python), version, _containerfile(recipe, base)]
    return _digest(parts), parts


def _containerfile(recipe: ComponentRecipe, base: str) -> str:
    if recipe.python == "debian":
        return "\n".join(
            [
                f"FROM {base}",
                "RUN python3 -m venv /opt/venv",
                "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                f"RUN {_pip_install_line(recipe)}",
                'CMD ["python3"]',
                "",
            ]
        )
    return "\n".join(
        [
            f"FROM {base}",
            "COPY python/ /usr/local/",
            # ld.so finds libpython in /usr/local/lib (its RUNPATH names this machine's prefix); the
            # extension modules' libraries are in the base.
            "RUN ldconfig && python3 -c 'import ssl, sqlite3, zlib, ctypes, lzma, bz2, readline, uuid'",
            f"RUN {_pip_install_line(recipe)}",
            'CMD ["python3"]',
            "",
        ]
    )


def component_image_name(minor: str) -> str:
    recipe = COMPONENT_RECIPES[minor]
    key, _parts = _component_key(recipe)
    label = "nopython" if minor == "none" else f"py{minor}"
    return f"{COMPONENT_REPOSITORY}:{label}-{key}"


def ensure_component_image(minor: str) -> BuiltImage:
    """The component image of a CPython minor ("3.7", "3.8", "3.11", "3.13") or "none" (no Python).

    Raises LookupError when this machine has no CPython of that minor to copy in.
    """
    recipe = COMPONENT_RECIPES[minor]
    ensure_tools()
    if recipe.python == "none":
        base = ensure_base_image("wkw-debian")
        name = component_image_name(minor)

        def tag() -> None:
            podman("tag", base.name, name)

        return _ensure(name, name.rsplit("-", 1)[1], tag, {"python": "none"})

    base = ensure_base_image("wkw-debian-python" if recipe.python == "debian" else "wkw-debian")
    wheels = component_wheelhouse(recipe)
    name = component_image_name(minor)
    key = name.rsplit("-", 1)[1]
    info = {"python": recipe.python, "kfp": recipe.kfp or "", "base": base.name}

    def build() -> None:
        context = images_dir() / "build" / f"component-py{minor}-{key}"
        shutil.rmtree(context, ignore_errors=True)
        context.mkdir(parents=True)
        try:
            if recipe.python == "copied":
                python = _host_python(recipe)
                _stage_python(python.parent.parent, minor, context / "python")
            (context / "Containerfile").write_text(_containerfile(recipe, base.name))
            podman_build(context, name, context / "Containerfile", volumes=[(wheels, "/wheels")])
        finally:
            shutil.rmtree(context, ignore_errors=True)

    return _ensure(name, key, build, info)


# --- make image -----------------------------------------------------------------------------------------
def oci_manifest_digest(archive: Path) -> str:
    """The manifest digest an OCI archive holds (index.json's first manifest)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        index = json.load(member)
    return str(index["manifests"][0]["digest"])


def write_dist(image: BuiltImage, dist: Path) -> dict[str, str]:
    """dist/wandb-kfp-webhook-<version>.oci.tar (gzip layers), named localhost/wandb-kfp-webhook:<version>,
    and beside it a .json with its size, the image's size in local storage, the manifest digest and the
    shim's size (du -sb in the image); both rewritten only when the image changed."""
    version = project_version()
    dist.mkdir(parents=True, exist_ok=True)
    archive = dist / f"wandb-kfp-webhook-{version}.oci.tar"
    described = dist / f"wandb-kfp-webhook-{version}.oci.tar.json"
    public = f"{WEBHOOK_REPOSITORY}:{version}"
    podman("tag", image.name, public)
    if archive.is_file() and described.is_file():
        facts: dict[str, str] = json.loads(described.read_text())
        if facts.get("built-as") == image.name:
            return facts
    save_archive(public, archive)
    shim_bytes = run_in(image.name, "-sb", SHIM_IN_IMAGE, entrypoint="du").split()[0]
    facts = {
        "archive": str(archive),
        "image": public,
        "built-as": image.name,
        "archive-bytes": str(archive.stat().st_size),
        "storage-bytes": str(image_size(image.name)),
        "shim-bytes": shim_bytes,
        "digest": oci_manifest_digest(archive),
    }
    described.write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def _mib(value: str) -> str:
    return f"{int(value) / 2**20:.0f} MiB"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.container.images", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["webhook", "components", "all"], nargs="?", default="webhook")
    parser.add_argument("--dist", type=Path, help="also write the webhook image's OCI archive (gzip) here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.what in ("webhook", "all"):
        image = ensure_webhook_image()
        print(f"webhook image: {image.name}\n  cached OCI archive: {image.archive}")
        if args.dist:
            facts = write_dist(image, args.dist)
            print(f"  tagged {facts['image']}")
            print(f"  {facts['archive']}: {_mib(facts['archive-bytes'])} ({facts['archive-bytes']} bytes, gzip layers)")
            print(f"  in local storage: {_mib(facts['storage-bytes'])}")
            print(f"  shim with vendored wandb in it: {_mib(facts['shim-bytes'])} (du -sb)")
            print(f"  manifest digest: {facts['digest']}")
    if args.what in ("components", "all"):
        for minor in COMPONENT_RECIPES:
            try:
                image = ensure_component_image(minor)
            except LookupError as missing:
                print(f"component image {minor}: skipped ({missing})")
                continue
            print(f"component image {minor}: {image.name} ({_mib(str(image_size(image.name)))})")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
