"""Self-managed certificates: what `plan` decides for each state of the Secret, without a cluster.

The cluster side (Secret writes, races, caBundle patching) is in tests/e2e/test_certsync.py.
"""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from tests.unit.certificates.planning import DNS, POLICY, SHORT_CA, T0, bundle_fingerprints, fp, load
from webhook.certificates import checks, generate, rotation
from webhook.certificates.rotation import Material, Policy, plan


def test_empty_secret_gets_a_ca_a_bundle_of_it_and_a_leaf_for_the_service(fresh: Material) -> None:
    leaf = load(fresh.tls_cert)
    leaf.verify_directly_issued_by(load(fresh.ca_cert))
    assert bundle_fingerprints(fresh) == [fp(fresh.ca_cert)]
    assert checks.cert_sans(fresh.tls_cert)[0] == frozenset(DNS)
    assert "wandb-kfp-webhook.wandb-system.svc" in DNS
    assert leaf.not_valid_after_utc == T0 + timedelta(days=rotation.DEFAULT_LEAF_VALID_DAYS)
    assert load(fresh.ca_cert).not_valid_after_utc == T0 + timedelta(days=rotation.DEFAULT_CA_VALID_DAYS)
    assert checks.key_matches_cert(fresh.tls_cert, fresh.tls_key)
    assert checks.key_matches_cert(fresh.ca_cert, fresh.ca_key)


def test_a_good_secret_is_left_exactly_as_it_is(fresh: Material) -> None:
    decided = plan(fresh, POLICY, trusted_fingerprints=frozenset(), now=T0 + timedelta(days=59))
    assert decided.material is fresh
    assert decided.changes == ()


def test_leaf_is_renewed_30_days_before_expiry_by_the_same_ca(fresh: Material) -> None:
    later = T0 + timedelta(days=61)
    decided = plan(fresh, POLICY, trusted_fingerprints=frozenset(), now=later)
    assert decided.material.ca_cert == fresh.ca_cert
    assert decided.material.bundle == fresh.bundle
    assert decided.material.tls_cert != fresh.tls_cert
    assert load(decided.material.tls_cert).not_valid_after_utc == later + timedelta(days=90)
    load(decided.material.tls_cert).verify_directly_issued_by(load(fresh.ca_cert))
    assert not decided.leaf_deferred


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda m: Material(m.ca_cert, m.ca_key, m.bundle, m.tls_cert, b""), id="key-missing"),
        pytest.param(
            lambda m: Material(m.ca_cert, m.ca_key, m.bundle, m.tls_cert, generate.generate_ca()[1]), id="key-mismatch"
        ),
        pytest.param(lambda m: Material(m.ca_cert, m.ca_key, m.bundle, b"garbage", m.tls_key), id="cert-garbage"),
    ],
)
def test_a_broken_leaf_is_replaced_and_the_ca_kept(fresh: Material, damage: object) -> None:
    broken = damage(fresh)  # type: ignore[operator]
    decided = plan(broken, POLICY, trusted_fingerprints=None, now=T0)
    assert decided.material.ca_cert == fresh.ca_cert
    assert checks.key_matches_cert(decided.material.tls_cert, decided.material.tls_key)
    load(decided.material.tls_cert).verify_directly_issued_by(load(fresh.ca_cert))


def test_a_leaf_for_other_names_is_replaced(fresh: Material) -> None:
    other = Policy(dns_names=rotation.service_dns_names("renamed", "wandb-system"))
    decided = plan(fresh, other, trusted_fingerprints=None, now=T0)
    assert checks.cert_sans(decided.material.tls_cert)[0] == frozenset(other.dns_names)
    assert decided.material.ca_cert == fresh.ca_cert


def test_a_broken_ca_means_new_everything() -> None:
    garbage = Material(b"not a cert", b"not a key", b"", b"", b"")
    decided = plan(garbage, POLICY, trusted_fingerprints=None, now=T0)
    assert generate.ca_is_reusable(decided.material.ca_cert, decided.material.ca_key, timedelta(0), now=T0)
    assert bundle_fingerprints(decided.material) == [fp(decided.material.ca_cert)]


@pytest.fixture(scope="module")
def rotating(old: Material) -> rotation.Plan:
    return plan(old, SHORT_CA, trusted_fingerprints=frozenset({fp(old.ca_cert)}), now=TestCaRotation.DAY21)


class TestCaRotation:
    """A CA valid 200 days is due for rotation 180 days before it expires: from day 20 on."""

    POLICY = SHORT_CA
    DAY21 = T0 + timedelta(days=21)

    def test_new_ca_joins_the_bundle_first_and_the_old_leaf_is_kept(
        self, old: Material, rotating: rotation.Plan
    ) -> None:
        new = rotating.material
        assert new.ca_cert != old.ca_cert
        assert bundle_fingerprints(new) == [fp(new.ca_cert), fp(old.ca_cert)]
        assert new.tls_cert == old.tls_cert and new.tls_key == old.tls_key
        assert rotating.leaf_deferred

    def test_leaf_stays_while_the_webhooks_do_not_trust_the_new_ca(self, rotating: rotation.Plan) -> None:
        later = self.DAY21 + timedelta(hours=1)
        decided = plan(rotating.material, self.POLICY, trusted_fingerprints=frozenset(), now=later)
        assert decided.material is rotating.material and decided.leaf_deferred

    def test_leaf_stays_until_the_grace_has_passed(self, old: Material, rotating: rotation.Plan) -> None:
        trusted = frozenset(bundle_fingerprints(rotating.material))
        soon = self.DAY21 + timedelta(seconds=30)
        decided = plan(rotating.material, self.POLICY, trusted_fingerprints=trusted, now=soon)
        assert decided.material.tls_cert == old.tls_cert and decided.leaf_deferred

    def test_leaf_moves_to_the_new_ca_once_trusted_and_both_cas_stay(
        self, old: Material, rotating: rotation.Plan
    ) -> None:
        trusted = frozenset(bundle_fingerprints(rotating.material))
        settled = self.DAY21 + timedelta(seconds=61)
        decided = plan(rotating.material, self.POLICY, trusted_fingerprints=trusted, now=settled)
        load(decided.material.tls_cert).verify_directly_issued_by(load(rotating.material.ca_cert))
        assert bundle_fingerprints(decided.material) == [fp(rotating.material.ca_cert), fp(old.ca_cert)]
        assert not decided.leaf_deferred

    def test_old_ca_leaves_the_bundle_once_expired(self, old: Material, rotating: rotation.Plan) -> None:
        """On day 201 the first CA has expired; the second (issued day 21) is itself due, so a third joins."""
        after_old_expiry = T0 + timedelta(days=201)
        renewed = plan(
            rotating.material,
            self.POLICY,
            trusted_fingerprints=frozenset(bundle_fingerprints(rotating.material)),
            now=after_old_expiry,
        ).material
        assert bundle_fingerprints(renewed) == [fp(renewed.ca_cert), fp(rotating.material.ca_cert)]
        assert fp(old.ca_cert) not in bundle_fingerprints(renewed)

    def test_an_expired_leaf_is_replaced_at_once_even_before_trust(self, old: Material) -> None:
        past_leaf = T0 + timedelta(days=91)
        decided = plan(old, self.POLICY, trusted_fingerprints=frozenset(), now=past_leaf)
        load(decided.material.tls_cert).verify_directly_issued_by(load(decided.material.ca_cert))
        assert not decided.leaf_deferred


def test_secret_data_round_trips_and_bad_base64_counts_as_missing(fresh: Material) -> None:
    data = fresh.to_secret_data()
    assert set(data) == {"ca.crt", "ca.key", "ca-bundle.crt", "tls.crt", "tls.key"}
    assert Material.from_secret_data(data) == fresh
    data["tls.key"] = "%%% not base64"
    assert Material.from_secret_data(data).tls_key == b""
    assert Material.from_secret_data(None) == Material()


def test_key_material_never_appears_in_repr(fresh: Material) -> None:
    text = repr(fresh)
    assert "PRIVATE KEY" not in text and base64.b64encode(fresh.tls_key).decode()[:40] not in text


def test_split_skips_garbage_between_certificates(fresh: Material) -> None:
    mixed = b"junk\n" + fresh.ca_cert + b"-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"
    assert [checks.fingerprint(c) for c in checks.split_pem_certificates(mixed)] == [fp(fresh.ca_cert)]
