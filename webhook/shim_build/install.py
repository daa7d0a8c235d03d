"""`wandb-kfp-webhook shim install|build-payload`: lay the runtime shim out in a directory.

The init container runs `install` into the shared emptyDir. The layout it writes:

    DEST/bootstrap/sitecustomize.py   the only file there (DEST/bootstrap goes first on PYTHONPATH)
    DEST/lib/wandb_kfp_shim/...       the shim package (a copy of webhook/shim without webhook-only files)
    DEST/site/py3.X/...               vendored wandb per CPython minor, from the payload, when one exists
    DEST/site/py3.X-compat/...        the compat wandb of a minor (older protobuf), where the payload has one
    DEST/.wandb-kfp-shim-complete     written last; its absence means "half-copied, redo"

With `--python 3.X` (the webhook passes it when the main container's image names its CPython minor) only
that minor's sites and the manifest are copied; hardlinks between them are kept.

This module runs only in the webhook image (Python 3.10+); it is not copied into pods.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from webhook.shim import contract

#: Image-level variable naming the directory that holds the prebuilt payload (it contains `site/`).
PAYLOAD_ENV = contract.PAYLOAD_DIR_ENV
DEFAULT_PAYLOAD_DIR = Path(contract.DEFAULT_PAYLOAD_DIR)
#: Written last by install; holds the stamp of what was installed.
COMPLETE_MARKER = ".wandb-kfp-shim-complete"

#: What --python accepts: a CPython minor.
PYTHON_MINOR = re.compile(r"^[0-9]+\.[0-9]+$")

#: The runtime shim package (webhook/shim): everything in it is copied into pods.
SHIM_SOURCE_DIR = Path(contract.__file__).resolve().parent
BOOTSTRAP_SOURCE = SHIM_SOURCE_DIR / contract.BOOTSTRAP_SUBDIR / "sitecustomize.py"


def _shim_files() -> list[Path]:
    """The shim package files to copy, relative to webhook/shim, in a stable order."""
    files = []
    for path in sorted(SHIM_SOURCE_DIR.rglob("*")):
        rel = path.relative_to(SHIM_SOURCE_DIR)
        if not path.is_file() or "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo"):
            continue
        if rel.parts[0] == contract.BOOTSTRAP_SUBDIR:
            continue
        files.append(rel)
    return files


def resolve_payload(payload: Optional[os.PathLike[str] | str] = None) -> Optional[Path]:
    """The payload to install from: the argument, else $WANDB_KFP_PAYLOAD_DIR, else the image default.

    Returns None when that directory holds no site/manifest.json (a shim without vendored wandb still
    works in images that ship their own wandb). An explicit argument that is not a payload is an error.
    """
    if payload is not None:
        root = Path(payload)
        if not (root / contract.SITE_SUBDIR / "manifest.json").is_file():
            raise FileNotFoundError(f"{root} is not a payload (no {contract.SITE_SUBDIR}/manifest.json)")
        return root
    root = Path(os.environ.get(PAYLOAD_ENV) or DEFAULT_PAYLOAD_DIR)
    return root if (root / contract.SITE_SUBDIR / "manifest.json").is_file() else None


def _stamp(payload: Optional[Path], python: Optional[str] = None, compat: bool = True) -> str:
    """Identity of what an install would write: shim file contents, the payload manifest, the minor chosen."""
    digest = hashlib.sha256()
    if python is not None:
        digest.update(b"python=" + python.encode() + (b"+compat" if compat else b"") + b"\0")
    for rel in [Path(contract.BOOTSTRAP_SUBDIR) / "sitecustomize.py", *_shim_files()]:
        digest.update(str(rel).encode() + b"\0" + (SHIM_SOURCE_DIR / rel).read_bytes() + b"\0")
    if payload is not None:
        digest.update((payload / contract.SITE_SUBDIR / "manifest.json").read_bytes())
    return digest.hexdigest()


def copy_tree_with_links(src: Path, dst: Path, seen: Optional[Dict[tuple[int, int], Path]] = None) -> Dict[str, int]:
    """Copy src into dst (new), keeping files that are hardlinks of each other linked in the copy.

    `seen` (source inode -> copied path) is shared by calls that copy trees whose files are linked.
    """
    seen = {} if seen is None else seen
    files = links = total_bytes = 0
    dst.mkdir(parents=True)
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(src)
        for name in dirnames:
            (dst / rel_dir / name).mkdir()
        for name in sorted(filenames):
            source = Path(dirpath) / name
            target = dst / rel_dir / name
            if source.is_symlink():
                os.symlink(os.readlink(source), target)
                continue
            info = source.stat()
            key = (info.st_dev, info.st_ino)
            if info.st_nlink > 1 and key in seen:
                os.link(seen[key], target)
                links += 1
                continue
            shutil.copy2(source, target)
            seen[key] = target
            files += 1
            total_bytes += info.st_size
    return {"files": files, "links": links, "bytes": total_bytes}


def minor_site_names(python: str, compat: bool = True) -> list[str]:
    """The site directories a pod running CPython `python` uses: py3.X and (compat) its compat site."""
    return ["py" + python] + (["py" + python + contract.COMPAT_SITE_SUFFIX] if compat else [])


def copy_site(src: Path, dst: Path, python: Optional[str] = None, compat: bool = True) -> Dict[str, int]:
    """Copy the payload's site/ into dst: all of it, or for one minor its site (and compat site) plus the
    manifest."""
    if python is None:
        return copy_tree_with_links(src, dst)
    dst.mkdir(parents=True)
    shutil.copy2(src / "manifest.json", dst / "manifest.json")
    totals = {"files": 1, "links": 0, "bytes": (src / "manifest.json").stat().st_size}
    seen: Dict[tuple[int, int], Path] = {}
    for name in minor_site_names(python, compat):
        if (src / name).is_dir():
            counts = copy_tree_with_links(src / name, dst / name, seen)
            for key in totals:
                totals[key] += counts[key]
    return totals


def _read_marker(dest: Path) -> Optional[Dict[str, Any]]:
    try:
        marker = json.loads((dest / COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def install(
    dest: os.PathLike[str] | str,
    payload: Optional[os.PathLike[str] | str] = None,
    python: Optional[str] = None,
    compat: bool = True,
) -> Dict[str, Any]:
    """Install bootstrap + shim package (+ vendored wandb when a payload exists) into dest.

    `python` ("3.7") copies only the vendored site of that CPython minor, and its compat site when
    `compat`; None copies every minor's sites.

    Idempotent: a complete install of the same content is left as is. Anything else in the shim's
    subdirectories (a half-copied run killed mid-way, an older version) is removed and redone; the
    completion marker is removed first and written last, so it only ever describes a whole copy.
    """
    dest = Path(dest)
    if python is not None and not PYTHON_MINOR.match(python):
        raise ValueError(f"--python must be a CPython minor such as 3.11, got {python!r}")
    payload_root = resolve_payload(payload)
    compat = compat or python is None
    stamp = _stamp(payload_root, python, compat)
    previous = _read_marker(dest)
    if previous is not None and previous.get("stamp") == stamp:
        return dict(previous, reused=True)

    dest.mkdir(parents=True, exist_ok=True)
    (dest / COMPLETE_MARKER).unlink(missing_ok=True)
    for sub in (contract.BOOTSTRAP_SUBDIR, contract.LIB_SUBDIR, contract.SITE_SUBDIR):
        if (dest / sub).is_symlink() or (dest / sub).is_file():
            (dest / sub).unlink()
        elif (dest / sub).exists():
            shutil.rmtree(dest / sub)

    bootstrap = dest / contract.BOOTSTRAP_SUBDIR
    bootstrap.mkdir()
    shutil.copy2(BOOTSTRAP_SOURCE, bootstrap / "sitecustomize.py")
    files, total_bytes = 1, BOOTSTRAP_SOURCE.stat().st_size

    package = dest / contract.LIB_SUBDIR / contract.SHIM_PACKAGE_NAME
    for rel in _shim_files():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SHIM_SOURCE_DIR / rel, package / rel)
        files += 1
        total_bytes += (package / rel).stat().st_size

    site_counts = {"files": 0, "links": 0, "bytes": 0}
    minors: Dict[str, str] = {}
    if payload_root is not None:
        site_counts = copy_site(payload_root / contract.SITE_SUBDIR, dest / contract.SITE_SUBDIR, python, compat)
        manifest = json.loads((payload_root / contract.SITE_SUBDIR / "manifest.json").read_text())
        minors = {
            minor: entry["wandb"]
            for minor, entry in manifest.get("minors", {}).items()
            if python is None or minor == python
        }

    result = {
        "stamp": stamp,
        "dest": str(dest),
        "payload": str(payload_root) if payload_root else None,
        "files": files + site_counts["files"],
        "hardlinks": site_counts["links"],
        "bytes": total_bytes + site_counts["bytes"],
        "wandb": minors,
        "python": python,
        "compat": compat,
    }
    marker_tmp = dest / (COMPLETE_MARKER + ".tmp")
    marker_tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    os.replace(marker_tmp, dest / COMPLETE_MARKER)
    return dict(result, reused=False)


def is_complete(dest: os.PathLike[str] | str) -> bool:
    """Whether dest holds a whole install (its completion marker is present and readable)."""
    return _read_marker(Path(dest)) is not None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point for the words after `wandb-kfp-webhook shim`."""
    parser = argparse.ArgumentParser(prog="wandb-kfp-webhook shim", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    install_cmd = commands.add_parser("install", help="copy the shim (and vendored wandb) into DIR")
    install_cmd.add_argument("dir", type=Path)
    install_cmd.add_argument(
        "--payload", type=Path, default=None, help=f"default: ${PAYLOAD_ENV} or {DEFAULT_PAYLOAD_DIR}"
    )
    install_cmd.add_argument(
        contract.INSTALL_PYTHON_FLAG,
        dest="python",
        metavar="3.X",
        default=None,
        help="copy only the vendored wandb of this CPython minor (default: every minor)",
    )
    install_cmd.add_argument(
        contract.INSTALL_COMPAT_FLAG,
        dest="compat",
        action="store_true",
        help="with --python: also copy that minor's compat wandb (for images that load an older protobuf)",
    )
    build_cmd = commands.add_parser("build-payload", help="vendor wandb per CPython minor into DIR/site")
    build_cmd.add_argument("dir", type=Path)
    build_cmd.add_argument(
        "--python",
        action="append",
        dest="minors",
        metavar="3.X",
        help="CPython minor to include (repeatable; default: all supported)",
    )
    build_cmd.add_argument("--platform", default=None, help="x86_64 or aarch64 (default: this machine)")
    args = parser.parse_args(argv)

    if args.command == "install":
        try:
            result = install(args.dir, args.payload, args.python, args.compat)
        except (OSError, ValueError) as error:
            print(f"wandb-kfp-webhook shim install: {error}", file=sys.stderr)
            return 1
        state = "already installed" if result["reused"] else "installed"
        vendored = ", ".join(f"py{minor}: wandb {version}" for minor, version in sorted(result["wandb"].items()))
        if args.python is not None and not vendored:
            vendored = f"nothing for Python {args.python}"
        print(
            f"{state} shim in {result['dest']}: {result['files']} files, {result['hardlinks']} hardlinks, "
            f"{result['bytes']} bytes; vendored {vendored or 'nothing (no payload)'}"
        )
        return 0

    from webhook.shim_build import payload as payload_module

    try:
        manifest = payload_module.build_payload(
            args.dir, minors=args.minors or payload_module.SUPPORTED_MINORS, platform=args.platform
        )
    except (OSError, ValueError, RuntimeError) as error:
        print(f"wandb-kfp-webhook shim build-payload: {error}", file=sys.stderr)
        return 1
    print(json.dumps(manifest, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
