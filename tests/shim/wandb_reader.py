"""Read an offline wandb run back from its `run-<id>.wandb` file, so tests assert on what W&B would receive.

wandb 0.30+ writes no config.yaml / wandb-summary.json offline and has no datastore reader any more, so
this decodes the file itself: a 7-byte header, then 32 KiB blocks of CRC-checked records (LevelDB log
format), each payload a `wandb_internal_pb2.Record`. Works for files written by older wandb too.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

HEADER = struct.pack("<4sHB", b":W&B", 0xBEE1, 0)
BLOCK_SIZE = 32 * 1024
RECORD_HEADER = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class CorruptRunFile(ValueError):
    """The .wandb file does not follow the record format."""


def iter_payloads(data: bytes):
    """Each logical record's bytes, reassembled from FIRST/MIDDLE/LAST fragments, CRCs checked."""
    if not data.startswith(HEADER):
        raise CorruptRunFile("missing :W&B header")
    offset = len(HEADER)
    pending: bytes | None = None
    while offset < len(data):
        block_left = BLOCK_SIZE - offset % BLOCK_SIZE
        if block_left < RECORD_HEADER.size:
            offset += block_left
            continue
        if offset + RECORD_HEADER.size > len(data):
            break
        checksum, length, kind = RECORD_HEADER.unpack_from(data, offset)
        start = offset + RECORD_HEADER.size
        chunk = data[start : start + length]
        if len(chunk) < length:
            break  # a record still being written when the process stopped
        if checksum != zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF:
            raise CorruptRunFile(f"bad checksum at byte {offset}")
        offset = start + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE and pending is not None:
            pending += chunk
        elif kind == LAST and pending is not None:
            yield pending + chunk
            pending = None
        elif kind == 0 and length == 0:
            offset += block_left - RECORD_HEADER.size  # zero padding up to the next block
        else:
            raise CorruptRunFile(f"unexpected record kind {kind} at byte {offset}")


def _item_key(item: Any) -> str:
    return item.key if item.key else "/".join(item.nested_key)


def _store(target: dict[str, Any], item: Any) -> None:
    """Set a config/summary item; a nested_key (["table", "nrows"]) becomes nested dicts."""
    keys = [item.key] if item.key else list(item.nested_key)
    for key in keys[:-1]:
        child = target.get(key)
        if not isinstance(child, dict):
            child = target[key] = {}
        target = child
    target[keys[-1]] = _decode(item.value_json)


def _decode(value_json: str) -> Any:
    return json.loads(value_json) if value_json else None


@dataclass
class RunFile:
    """What one offline run recorded, decoded."""

    path: Path
    run_id: str = ""
    project: str = ""
    group: str = ""
    job_type: str = ""
    name: str = ""
    notes: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    used_artifacts: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    exit_code: int | None = None
    wandb_version: str = ""
    python_version: str = ""
    record_types: list[str] = field(default_factory=list)

    def user_config(self) -> dict[str, Any]:
        """config without wandb's own `_wandb` entry."""
        return {key: value for key, value in self.config.items() if key != "_wandb"}

    def artifact(self, name: str) -> dict[str, Any]:
        """The logged artifact with that name (KeyError lists the names there are)."""
        for artifact in self.artifacts:
            if artifact["name"] == name:
                return artifact
        raise KeyError(f"no artifact {name!r}; logged: {[a['name'] for a in self.artifacts]}")


def _apply_run(run: RunFile, record: Any) -> None:
    run.run_id = record.run_id or run.run_id
    run.project = record.project or run.project
    run.group = record.run_group or run.group
    run.job_type = record.job_type or run.job_type
    run.name = record.display_name or run.name
    run.notes = record.notes or run.notes
    if record.tags:
        run.tags = list(record.tags)
    if record.HasField("telemetry"):
        run.wandb_version = record.telemetry.cli_version or run.wandb_version
        run.python_version = record.telemetry.python_version or run.python_version
    for item in record.config.update:
        _store(run.config, item)
    for item in record.summary.update:
        _store(run.summary, item)


def read_run(path: Path | str) -> RunFile:
    """Decode a run-<id>.wandb file into a RunFile."""
    path = Path(path)
    run = RunFile(path=path)
    for payload in iter_payloads(path.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        run.record_types.append(kind or "")
        if kind == "run":
            _apply_run(run, record.run)
        elif kind == "config":
            for item in record.config.update:
                _store(run.config, item)
            for item in record.config.remove:
                run.config.pop(_item_key(item), None)
        elif kind == "summary":
            for item in record.summary.update:
                _store(run.summary, item)
            for item in record.summary.remove:
                run.summary.pop(_item_key(item), None)
        elif kind == "history":
            run.history.append({_item_key(item): _decode(item.value_json) for item in record.history.item})
        elif kind == "artifact":
            artifact = record.artifact
            run.artifacts.append(
                {
                    "name": artifact.name,
                    "type": artifact.type,
                    "digest": artifact.digest,
                    "metadata": _decode(artifact.metadata) or {},
                    "entries": [
                        {"path": entry.path, "ref": entry.ref, "size": entry.size, "digest": entry.digest}
                        for entry in artifact.manifest.contents
                    ],
                }
            )
        elif kind == "use_artifact":
            run.used_artifacts.append({"name": record.use_artifact.name, "type": record.use_artifact.type})
        elif kind == "files":
            run.files += [item.path for item in record.files.files]
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
        elif kind == "telemetry":
            run.wandb_version = record.telemetry.cli_version or run.wandb_version
            run.python_version = record.telemetry.python_version or run.python_version
    return run


def find_run_files(root: Path | str) -> list[Path]:
    """Every offline run file under root (a WANDB_DIR), oldest first."""
    return sorted(Path(root).glob("**/offline-run-*/run-*.wandb"))


def read_only_run(root: Path | str) -> RunFile:
    """The one offline run under root; fails listing what is there when there is not exactly one."""
    files = find_run_files(root)
    if len(files) != 1:
        raise AssertionError(f"expected one offline run under {root}, found {[str(f) for f in files]}")
    return read_run(files[0])
