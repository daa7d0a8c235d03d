"""Get this machine ready for the node tier: Debian packages, binaries, images. `make e2e-node` and
`make test` run it before pytest, so the long builds print their progress and a broken build fails
the target instead of skipping tests. Exits 0 with one line when the machine cannot run the tier.
"""

from __future__ import annotations

import os
import sys
import time

from tests.e2e.binaries import BinariesUnavailable, GoNotInstalled, ensure_helm
from tests.node import host
from tests.node.binaries import binary_versions, ensure_node_binaries
from tests.node.images import ImageUnavailable, ensure_images
from tests.node.webhook import ensure_webhook_images


def _log(message: str) -> None:
    print(f"[node-prepare] {message}", file=sys.stderr, flush=True)


def prepare(build: bool = True) -> str | None:
    """Install, build and cache everything; return why the tier cannot run here, or None."""
    if os.geteuid() == 0:
        host.ensure_packages()
    reason = host.unsupported_reason()
    if reason:
        return reason
    started = time.monotonic()
    binaries = ensure_node_binaries(build)
    _log(f"binaries ready in {time.monotonic() - started:.0f}s")
    for name, version in binary_versions(binaries).items():
        _log(f"  {name}: {version}")
    started = time.monotonic()
    images = ensure_images(build)
    _log(f"images ready in {time.monotonic() - started:.0f}s: {', '.join(ref for ref, _ in images.values())}")
    # The admin's journey: helm for the chart, the webhook image (`make image`) and component images.
    started = time.monotonic()
    _log(f"helm: {ensure_helm(build)}")
    try:
        webhook = ensure_webhook_images()
    except ImageUnavailable as error:  # the rest of the tier still runs; pytest says why these do not
        _log(f"the node tier's webhook tests will be skipped: {error}")
        return None
    refs = [webhook.webhook[0], *(ref for ref, _ in webhook.components.values())]
    _log(f"webhook and component images ready in {time.monotonic() - started:.0f}s: {', '.join(refs)}")
    return None


def main() -> int:
    """Exit 0 when ready or when this machine cannot run the tier (saying why); 1 when a build failed."""
    build = os.environ.get("WKW_E2E_BUILD", "1") != "0"
    try:
        reason = prepare(build)
    except GoNotInstalled as error:
        reason = str(error)
    except (BinariesUnavailable, ImageUnavailable) as error:
        if build:
            _log(f"a build failed: {error}")
            return 1
        reason = f"{error} (WKW_E2E_BUILD=0: nothing is built)"
    if reason:
        _log(f"the node tier will be skipped: {reason}")
        return 1 if os.environ.get("WKW_NODE_REQUIRED") == "1" else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
