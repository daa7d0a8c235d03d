"""`certs sync`: keep the webhook's own CA and serving certificate in a Secret, on disk and in caBundle.

The Secret is the single source of truth every replica reads; the first replica to notice that the
material is missing, invalid or close to expiry writes what `rotation.plan` decides, with optimistic
concurrency (create, or update carrying the resourceVersion it read). A 409 means another replica
won: re-read and use what it wrote. Each replica then writes tls.crt/tls.key atomically into its own
directory (the server reloads them per handshake, see `webhook.server.tls`) and makes every webhook in
the MutatingWebhookConfiguration trust the CA bundle. Nothing here logs key material.
"""

from __future__ import annotations

import base64
import logging
import signal
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from webhook.certificates import generate
from webhook.certificates.checks import describe, fingerprint, split_pem_certificates
from webhook.certificates.rotation import Material, Policy, plan

log = logging.getLogger(__name__)

#: How many times one pass re-reads after losing a write race before giving up until the next pass.
MAX_CONFLICT_RETRIES = 5


def write_serving_files(out_dir: Path, material: Material) -> bool:
    """Write tls.key then tls.crt atomically when they differ from what is on disk; True when written.

    The server keeps its current certificate until both files form a matching pair."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out_dir / generate.SERVING_CERT_FILE, out_dir / generate.SERVING_KEY_FILE
    on_disk = (
        cert_path.read_bytes() if cert_path.exists() else b"",
        key_path.read_bytes() if key_path.exists() else b"",
    )
    if on_disk == (material.tls_cert, material.tls_key):
        return False
    generate.write_file_atomically(key_path, material.tls_key, 0o600)
    generate.write_file_atomically(cert_path, material.tls_cert, 0o644)
    return True


@dataclass
class Outcome:
    """What one pass did, for logs, exit codes and tests."""

    secret_written: bool = False
    lost_races: int = 0
    files_written: bool = False
    webhooks_patched: int = 0
    webhook_config_found: bool = True
    leaf_deferred: bool = False
    changes: tuple[str, ...] = ()
    material: Material = field(default_factory=Material, repr=False)


class CertSyncer:
    """One replica's view: read the Secret, fix it if needed, mirror it to files and the webhook config."""

    def __init__(
        self,
        api_client: Any,
        *,
        namespace: str,
        secret_name: str,
        webhook_config_name: str,
        out_dir: Path,
        policy: Policy,
    ) -> None:
        from kubernetes import client  # imported here: unit tests of `plan` need no cluster client

        self._core = client.CoreV1Api(api_client)
        self._admission = client.AdmissionregistrationV1Api(api_client)
        self._client_module = client
        self.namespace = namespace
        self.secret_name = secret_name
        self.webhook_config_name = webhook_config_name
        self.out_dir = out_dir
        self.policy = policy

    # -- cluster reads and writes ----------------------------------------------------------------

    def _read_secret(self) -> Any | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._core.read_namespaced_secret(self.secret_name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def _read_webhook_config(self) -> Any | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._admission.read_mutating_webhook_configuration(self.webhook_config_name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    @staticmethod
    def trusted_by_every_webhook(webhook_config: Any | None) -> frozenset[str] | None:
        """Fingerprints of the CAs in every webhook's caBundle (None without a configuration)."""
        if webhook_config is None:
            return None
        common: set[str] | None = None
        for webhook in webhook_config.webhooks or []:
            raw = webhook.client_config.ca_bundle or ""
            try:
                pem = base64.b64decode(raw)
            except ValueError:
                pem = b""
            found = {fingerprint(c) for c in split_pem_certificates(pem)}
            common = found if common is None else common & found
        return frozenset(common or ())

    def _write_secret(self, existing: Any | None, material: Material) -> bool:
        """Create or update (with the resourceVersion read); False when another writer got there first."""
        from kubernetes.client.exceptions import ApiException

        client = self._client_module
        try:
            if existing is None:
                body = client.V1Secret(
                    metadata=client.V1ObjectMeta(
                        name=self.secret_name,
                        namespace=self.namespace,
                        labels={"app.kubernetes.io/managed-by": "wandb-kfp-webhook-certsync"},
                    ),
                    type="Opaque",
                    data=material.to_secret_data(),
                )
                self._core.create_namespaced_secret(self.namespace, body)
            else:
                existing.data = material.to_secret_data()
                self._core.replace_namespaced_secret(self.secret_name, self.namespace, existing)
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    def _patch_ca_bundle(self, webhook_config: Any, bundle: bytes) -> int:
        """Set caBundle on every webhook that lacks exactly this bundle; returns how many were patched.

        A JSON patch per index, guarded by a `test` of the webhook's name, so a configuration reordered
        in between is refused rather than patched at the wrong place."""
        encoded = base64.b64encode(bundle).decode("ascii")
        operations: list[dict[str, Any]] = []
        for index, webhook in enumerate(webhook_config.webhooks or []):
            if webhook.client_config.ca_bundle == encoded:
                continue
            operations.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook.name})
            operations.append({"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded})
        if operations:
            self._admission.patch_mutating_webhook_configuration(self.webhook_config_name, operations)
        return len(operations) // 2

    # -- one pass ----------------------------------------------------------------------------------

    def sync_once(self, now: datetime | None = None) -> Outcome:
        """Bring the Secret, the files and the webhook configuration in line (one pass)."""
        outcome = Outcome()
        for _attempt in range(MAX_CONFLICT_RETRIES + 1):
            secret = self._read_secret()
            webhook_config = self._read_webhook_config()
            current = Material.from_secret_data(secret.data if secret is not None else None)
            decided = plan(
                current, self.policy, trusted_fingerprints=self.trusted_by_every_webhook(webhook_config), now=now
            )
            outcome.webhook_config_found = webhook_config is not None
            outcome.leaf_deferred = decided.leaf_deferred
            if decided.material == current:
                break
            if self._write_secret(secret, decided.material):
                outcome.secret_written = True
                outcome.changes = decided.changes
                for change in decided.changes:
                    log.info("secret %s/%s: %s", self.namespace, self.secret_name, change)
                break
            outcome.lost_races += 1
            log.info("secret %s/%s was written by another replica first; re-reading", self.namespace, self.secret_name)
        else:
            raise RuntimeError(f"secret {self.namespace}/{self.secret_name} kept changing under us; retrying later")
        material = decided.material
        outcome.material = material
        try:
            if webhook_config is None:
                log.warning(
                    "MutatingWebhookConfiguration %s not found: caBundle not set (retrying next pass)",
                    self.webhook_config_name,
                )
            else:
                outcome.webhooks_patched = self._patch_ca_bundle(webhook_config, material.bundle)
                if outcome.webhooks_patched:
                    log.info(
                        "set caBundle (%d CA) on %d webhook(s) of %s",
                        len(split_pem_certificates(material.bundle)),
                        outcome.webhooks_patched,
                        self.webhook_config_name,
                    )
        finally:
            # Files last (and even when the patch failed): a leaf only ever moves to a CA that every
            # webhook already trusts, so the server may always serve what the Secret holds.
            if write_serving_files(self.out_dir, material):
                outcome.files_written = True
                log.info("wrote serving certificate %s into %s", describe(material.tls_cert), self.out_dir)
        return outcome


def safe_reason(error: BaseException) -> str:
    """An ApiException carries the response body (which may hold Secret data): keep status and reason."""
    status = getattr(error, "status", None)
    if status is not None:
        return f"API error {status} {getattr(error, 'reason', '')}".strip()
    return f"{type(error).__name__}: {error}"


def run_forever(syncer: CertSyncer, interval_s: float) -> None:
    """Sync every `interval_s` until SIGTERM/SIGINT; a failed pass is logged and retried."""
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping.is_set():
        try:
            syncer.sync_once()
        except Exception as error:  # noqa: BLE001 - the sidecar keeps going; the next pass retries
            log.error("certificate sync failed, retrying in %.0fs: %s", interval_s, safe_reason(error))
        stopping.wait(interval_s)
