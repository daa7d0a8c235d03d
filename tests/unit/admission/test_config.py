"""Configuration precedence: defaults < settings file < env < namespace annotations < pod annotations."""

from __future__ import annotations

import pytest

from webhook.admission import config as cfg


def test_defaults_are_what_the_docs_say():
    settings = cfg.Settings()
    assert settings.api_key_secret_name == "wandb-api-key"
    assert settings.api_key_secret_key == "api-key"
    assert settings.base_url == "https://api.wandb.ai"
    assert settings.excluded_namespaces == ["kube-system", "kube-public", "kube-node-lease"]


def test_file_then_env_then_flags(tmp_path, monkeypatch):
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("project: from-file\nentity: file-entity\ntags: [a, b]\nport: 9443\n")
    assert cfg.load_settings(settings_file).project == "from-file"
    monkeypatch.setenv("WANDB_KFP_WEBHOOK_PROJECT", "from-env")
    monkeypatch.setenv("WANDB_KFP_WEBHOOK_TAGS", "x,y")
    loaded = cfg.load_settings(settings_file)
    assert (loaded.project, loaded.entity, loaded.tags, loaded.port) == (
        "from-env",
        "file-entity",
        ["x", "y"],
        9443,
    )
    assert cfg.load_settings(settings_file, project="from-flag").project == "from-flag"


def test_settings_file_rejects_unknown_keys(tmp_path):
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("projcet: typo\n")
    with pytest.raises(ValueError, match="projcet"):
        cfg.load_settings(settings_file)


def test_nested_resources_from_env(monkeypatch):
    monkeypatch.setenv("WANDB_KFP_WEBHOOK_SHIM_RESOURCES__MEMORY_LIMIT", "512Mi")
    assert cfg.Settings().shim_resources.memory_limit == "512Mi"


def test_namespace_then_pod_annotations_win():
    settings = cfg.Settings(project="server", entity="server-entity", tags=["s"])
    namespace = {"wandb.ai/project": "team", "wandb.ai/entity": "team-entity", "wandb.ai/tags": "t1, t2"}
    pod = {"wandb.ai/project": "pod-project", "wandb.ai/api-key-secret": "my-key/token"}
    resolved = cfg.resolve(settings, namespace, pod, "ns")
    assert resolved.project == "pod-project"
    assert resolved.entity == "team-entity"
    assert resolved.tags == ("t1", "t2")
    assert (resolved.api_key_secret_name, resolved.api_key_secret_key) == ("my-key", "token")
    assert resolved.warnings == ()


def test_secret_without_key_keeps_the_configured_key():
    resolved = cfg.resolve(
        cfg.Settings(api_key_secret_key="k"), {"wandb.ai/api-key-secret": "other"}, {}, "ns"
    )
    assert (resolved.api_key_secret_name, resolved.api_key_secret_key) == ("other", "k")


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        ("wandb.ai/project", "a/b"),
        ("wandb.ai/project", ""),
        ("wandb.ai/entity", "x" * 200),
        ("wandb.ai/tags", ",,"),
        ("wandb.ai/api-key-secret", "Not_A_Name"),
        ("wandb.ai/base-url", "ftp://example.com"),
        ("wandb.ai/kubeflow-url", "not a url"),
        ("wandb.ai/init-timeout", "-5"),
        ("wandb.ai/init-timeout", "9999"),
        ("wandb.ai/shim", "maybe"),
        ("wandb.ai/pythonpath", "relative/dir"),
    ],
)
def test_invalid_annotation_is_ignored_with_a_warning(annotation, value):
    settings = cfg.Settings(project="kept", entity="kept")
    baseline = cfg.resolve(settings, {}, {}, "team")
    resolved = cfg.resolve(settings, {annotation: value}, {}, "team")
    assert len(resolved.warnings) == 1
    assert annotation in resolved.warnings[0] and "namespace team" in resolved.warnings[0]
    assert (value not in resolved.warnings[0]) or value in annotation, "the warning must not echo the value"
    assert resolved.__class__(**{**resolved.__dict__, "warnings": ()}) == baseline


def test_pipeline_patterns_merge_settings_and_namespace():
    settings = cfg.Settings(pipelines=["train-*"])
    patterns, warnings = cfg.pipeline_patterns(settings, {"wandb.ai/pipelines": "eval-*, bad pattern!"}, "ns")
    assert patterns == ["train-*", "eval-*"]
    assert len(warnings) == 1 and "wandb.ai/pipelines" in warnings[0]


@pytest.mark.parametrize(
    "value",
    ["team-key/..", "team-key/.", "team-key/..hidden", "a..b", "a.-b", "-a", "a" * 254, "Team", "a/b/c", "a/"],
)
def test_secret_annotations_the_apiserver_would_refuse_are_ignored(value):
    config = cfg.resolve(cfg.Settings(), {}, {"wandb.ai/api-key-secret": value}, "ns")
    assert (config.api_key_secret_name, config.api_key_secret_key) == ("wandb-api-key", "api-key")
    assert any("api-key-secret" in warning for warning in config.warnings)


@pytest.mark.parametrize(
    ("value", "name", "key"), [("team.key/.k-1_x", "team.key", ".k-1_x"), ("a.b", "a.b", "api-key")]
)
def test_secret_annotations_the_apiserver_accepts_are_used(value, name, key):
    config = cfg.resolve(cfg.Settings(), {}, {"wandb.ai/api-key-secret": value}, "ns")
    assert (config.api_key_secret_name, config.api_key_secret_key) == (name, key)


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "1e3", " 7x", "99999999999999999999"])
def test_a_bad_value_is_never_echoed_in_the_warning(value):
    config = cfg.resolve(cfg.Settings(), {}, {"wandb.ai/init-timeout": value}, "ns")
    assert config.init_timeout_seconds == cfg.Settings().init_timeout_seconds
    (warning,) = config.warnings
    assert value.strip() not in warning


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("api_key_secret_name", "a..b"),
        ("api_key_secret_key", ".."),
        ("shim_size_limit", "lots"),
        ("offline_pvc", "Bad_Claim"),
        ("locked_annotations", ["base-url", "nope"]),
        ("shim_image_pull_policy", "Sometimes"),
    ],
)
def test_settings_the_apiserver_would_refuse_stop_the_server_at_start(field, value):
    with pytest.raises(ValueError, match=field):
        cfg.Settings(**{field: value})


def test_locked_annotations_are_ignored_on_namespaces_and_pods():
    settings = cfg.Settings(locked_annotations=["wandb.ai/base-url", "shim"], pod_locked_annotations=["entity"])
    config = cfg.resolve(
        settings,
        {"wandb.ai/base-url": "https://a.example.com", "wandb.ai/entity": "team"},
        {"wandb.ai/shim": "disabled", "wandb.ai/entity": "me"},
        "ns",
    )
    assert config.base_url == "https://api.wandb.ai" and config.shim_enabled is True
    assert config.entity == "team"
    assert len([w for w in config.warnings if "locked by the server settings" in w]) == 3
