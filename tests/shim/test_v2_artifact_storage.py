"""Output artifacts by where they live: remote URIs (s3://, gs://, minio://) are logged as references
(no download, no cloud library, no network); local files over WANDB_KFP_MAX_UPLOAD_BYTES as file://
references; smaller ones uploaded. Real wandb 0.31 offline, the installed shim package driven directly
(kfp maps remote URIs to /s3, /gcs, /minio mounts; the script points those mounts into a tmp dir).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.shim.wandb_reader import read_only_run
from webhook.shim import contract

SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from wandb_kfp_shim import kfp_v2, recorder, values

    mounts = sys.argv[2]
    kfp_v2._REMOTE_MOUNTS = (("gs://", mounts + "/gcs/"), ("minio://", mounts + "/minio/"),
                             ("s3://", mounts + "/s3/"))
    outputs = {
        "on_s3": ("s3://bucket/run/model", "system.Model"),
        "on_gcs": ("gs://bucket/run/data", "system.Dataset"),
        "on_minio": ("minio://mlpipeline/v2/artifacts/run/data", "system.Dataset"),
        "small": (mounts + "/local/small", "system.Dataset"),
        "large": (mounts + "/local/large", "system.Dataset"),
    }
    for uri, _schema in outputs.values():
        path = kfp_v2.local_path(uri)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write("x" * (64 if "large" in uri else 8))
    rec = recorder.Recorder("kfp-v2-executor", "store")
    assert rec.start({})
    for name, (uri, schema) in outputs.items():
        reference = {"name": name, "schemaTitle": schema, "uri": uri, "metadata": {"k": 1}}
        kfp_v2.record_output_artifact(rec, name, reference, values.max_upload_bytes())
    rec.finish()
    """
)


def test_output_artifacts_by_storage(shim_dir, tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("WANDB_", "PYTHON"))}
    env.update(
        {
            contract.WANDB_MODE: "offline",
            contract.WANDB_DIR: str(tmp_path / "wandb"),
            contract.MAX_UPLOAD_BYTES: "32",
            "HOME": str(tmp_path / "home"),
        }
    )
    (tmp_path / "wandb").mkdir()
    script = tmp_path / "store.py"
    script.write_text(SCRIPT)
    lib = str(shim_dir / contract.LIB_SUBDIR)
    completed = subprocess.run(
        [sys.executable, str(script), lib, str(tmp_path / "mounts")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    run = read_only_run(tmp_path / "wandb")

    for name, uri in [
        ("on_s3", "s3://bucket/run/model"),
        ("on_gcs", "gs://bucket/run/data"),
        ("on_minio", "minio://mlpipeline/v2/artifacts/run/data"),
    ]:
        artifact = run.artifact("store." + name)
        assert [entry["ref"] for entry in artifact["entries"]] == [uri]
        assert artifact["metadata"] == {"k": 1, "uri": uri}
    small = run.artifact("store.small")["entries"]
    assert [(entry["ref"], entry["size"]) for entry in small] == [("", 8)]
    large = run.artifact("store.large")["entries"]
    assert [entry["ref"] for entry in large] == ["file://" + str(tmp_path / "mounts" / "local" / "large")]
