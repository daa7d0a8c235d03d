"""One W&B run per component call, started and finished by the shim, that can never fail the component.

`Recorder.start` imports wandb and starts the run (online, bounded by WANDB_KFP_INIT_TIMEOUT, else
offline so no data is lost); the kfp_v1 / kfp_v2 modules record inputs and outputs through it; `finish`
closes the run with the component's exit code. Every public method swallows its own errors and says so
in one `wandb-kfp-shim:` line: the component's outcome is the same with or without a working W&B.

User code's own wandb calls meet the run as `usercalls.SharedRun` describes. When user code shared the
run, its end waits for the process's end (user threads may still log after the component function
returned). Only the process that started the run finishes it: a forked child that returns from the
component function leaves it alone.

Just over 400 lines, kept whole on purpose: start, the offline fallback, finish and the fork and exit
guards share one object's state, and each is only safe next to the others.
"""

import atexit
import contextlib
import importlib
import os
import sys
from typing import Any, Dict

from . import contract, environment, faults
from .messages import describe, hide_shim_frames_at_exit, say
from .usercalls import SharedRun
from .values import (
    SUMMARY_TEXT_LIMIT,
    artifact_name,
    env,
    exit_code_of,
    has_credentials,
    init_timeout,
    kfp_metadata,
    kfp_run_link,
    summary_value,
    tree_size,
)

#: Settings the shim passes so wandb adds nothing to the component's stdout/stderr.
_QUIET_SETTINGS = {"silent": True, "quiet": True, "show_info": False, "show_warnings": False}
#: Summary keys the shim writes when the component raises.
EXCEPTION_TYPE_KEY = "exception_type"
EXCEPTION_MESSAGE_KEY = "exception_message"
#: Config key holding the link to the KFP run page, as W&B's own @wandb_log names it.
KFP_LINK_KEY = "LINK_TO_KUBEFLOW_RUN"
#: Config key holding where the component ran (pod, namespace, workflow, pipeline, run id).
KFP_META_KEY = "kubeflow"


def load_wandb():
    """The wandb module to record with (the image's own wins, else the vendored one), or None.

    wandb_import.import_wandb says itself why it found none; without that module this says it.
    """
    faults.check("import_wandb")
    try:
        from .wandb_import import import_wandb
    except ImportError:
        pass
    else:
        return import_wandb()
    try:
        import wandb
    except Exception as exc:
        say("wandb could not be imported (" + describe(exc) + "); this component runs unrecorded")
        return None
    return wandb


class Recorder(SharedRun):
    """The shim's W&B run for one component call."""

    def __init__(self, kind, component):
        self.kind = kind
        self.component = component
        self.wandb: Any = None
        self.run: Any = None
        self.offline_reason = None
        self._finished = False
        self._saved_module_init = None
        self._saved_module_finish = None
        #: The process that owns the run; a forked copy of this object in a child never finishes it.
        self.pid = os.getpid()
        #: Set when user code called wandb.init and got the shim's run: finishing then waits for exit.
        self.shared_with_user = False

    # --- start -----------------------------------------------------------------------------------
    def start(self, config):
        """Start the run with `config` (the component's inputs plus KFP metadata); False when unrecorded."""
        try:
            self.wandb = load_wandb()
            if self.wandb is None:
                return False
            faults.check("init")
            with environment.writable_wandb_dirs(self._run_base_dir()):
                self.run = self._init_run()
            if self.run is None:
                return False
            self._adopt_user_calls()
            self.update_config(config)
            from .runextras import after_start

            after_start(self)
            return True
        except Exception as exc:
            say("could not start the W&B run (" + describe(exc) + "); the component runs unrecorded")
            self.run = None
            return False

    def _init_kwargs(self):
        """wandb.init arguments; env the webhook sets (WANDB_*) wins, else derived defaults."""
        kwargs = {}
        if not env(contract.WANDB_PROJECT):
            kwargs["project"] = artifact_name(env(contract.PIPELINE_NAME, "kubeflow-pipelines"))
        if not env(contract.WANDB_JOB_TYPE):
            kwargs["job_type"] = self.component
        if not env(contract.WANDB_RUN_GROUP):
            group = env(contract.KFP_RUN_ID) or env(contract.WORKFLOW_NAME)
            if group:
                kwargs["group"] = group
        if not env("WANDB_NAME"):
            kwargs["name"] = self.component
        run_id = environment.run_id()
        if run_id and not env(contract.WANDB_RUN_ID):
            kwargs["id"] = run_id  # taken out of the environment so child processes never inherit it
        link = kfp_run_link()
        if link and not env("WANDB_NOTES"):
            kwargs["notes"] = "Kubeflow Pipelines run: " + link
        if not env(contract.WANDB_DIR):
            os.makedirs(contract.DEFAULT_RUN_DIR, exist_ok=True)
            kwargs["dir"] = contract.DEFAULT_RUN_DIR
        else:  # wandb 0.18 (vendored for 3.7 and as compat) writes to /tmp when WANDB_DIR does not exist
            with contextlib.suppress(OSError):
                os.makedirs(env(contract.WANDB_DIR), exist_ok=True)
        return kwargs

    @staticmethod
    def _run_base_dir():
        """Where the run's files go (WANDB_DIR, else the shim's default), for wandb's own directories."""
        return env(contract.WANDB_DIR) or contract.DEFAULT_RUN_DIR

    def _settings(self, mode):
        """wandb.Settings that keep wandb silent and bound the online start; tolerant of older wandb."""
        wanted: Dict[str, Any] = dict(_QUIET_SETTINGS)
        wanted["mode"] = mode
        if mode == "online":
            wanted["init_timeout"] = init_timeout()
        if not env("WANDB_CONSOLE"):
            wanted["console"] = "wrap"
        settings_type = self.wandb.Settings
        for optional in ("show_warnings", "show_info", "quiet"):
            try:
                return settings_type(**wanted)
            except Exception:
                wanted.pop(optional, None)
        return settings_type(**wanted)

    def _quiet_wandb(self):
        """Make wandb print nothing in this process, before it first sets itself up.

        wandb's terminal messages (e.g. "Loaded credentials") follow the settings of its first setup,
        not those of a run, so the quiet settings go to wandb.setup. wandb 0.31's error-report export
        (OpenTelemetry) logs failures through the root logger, which KFP's executor sends to stdout; the
        shim turns that export off.
        """
        try:
            self.wandb.setup(settings=self.wandb.Settings(**_QUIET_SETTINGS))
        except Exception:
            try:
                self.wandb.setup(settings=self.wandb.Settings(silent=True))
            except Exception as exc:
                say("could not make wandb quiet (" + describe(exc) + ")")
        try:
            from wandb.analytics.opentelemetry import opentelemetry_proxy
        except Exception:
            return
        if sys.modules.get("wandb") is self.wandb:
            opentelemetry_proxy.disable()

    def _init_run(self):
        """Online when credentials exist and W&B answers in time, else offline; None when both fail."""
        self._quiet_wandb()
        kwargs = self._init_kwargs()
        requested_mode = (env(contract.WANDB_MODE, "online") or "online").lower()
        if requested_mode == "disabled":
            return None
        if requested_mode not in ("offline", "dryrun") and has_credentials():
            try:
                return self.wandb.init(settings=self._settings("online"), **kwargs)
            except Exception as exc:
                self.offline_reason = "W&B was not reachable or refused the run (" + type(exc).__name__ + ")"
                # wandb's service still holds the failed run's id (the webhook's WANDB_RUN_ID): start afresh,
                # or the offline run with that same id is refused as "in use".
                self._restart_wandb()
        elif requested_mode in ("offline", "dryrun"):
            self.offline_reason = "WANDB_MODE is offline"
        else:
            self.offline_reason = "no W&B API key was found"
        return self.wandb.init(settings=self._settings("offline"), **kwargs)

    def _restart_wandb(self):
        """Tear wandb's service down after a failed online start, then set it up quiet again."""
        try:
            self.wandb.teardown()
        except Exception as exc:
            say("could not reset wandb after the failed online start (" + describe(exc) + ")")
        self._quiet_wandb()

    def owns_process(self):
        """False in a forked child: the run belongs to the parent process."""
        return os.getpid() == self.pid

    def active(self):
        """True while the shim's run is open (in the process that started it)."""
        return self.run is not None and not self._finished and self.owns_process()

    # --- recording --------------------------------------------------------------------------------
    def update_config(self, values):
        """Add values to run.config (later values win)."""
        if self.active() and values:
            self.run.config.update({key: summary_value(value) for key, value in values.items()}, allow_val_change=True)

    def update_summary(self, values):
        """Add values to the run summary."""
        if self.active() and values:
            for key, value in values.items():
                self.run.summary[key] = summary_value(value)

    def log(self, values):
        """One history step (media, charts)."""
        if self.active() and values:
            self.run.log(values)

    def new_artifact(self, name, kind, metadata=None):
        """A wandb.Artifact named and typed from KFP (type falls back to `kfp_artifact`)."""
        metadata = summary_value(metadata) if metadata else None
        return self.wandb.Artifact(
            artifact_name(name),
            type=artifact_name(kind or "kfp_artifact"),
            metadata=metadata if isinstance(metadata, dict) else None,
        )

    def add_local(self, artifact, path, max_bytes):
        """Upload a local file/dir into `artifact`, or reference it (file://) when over `max_bytes`."""
        size = tree_size(path)
        if size > max_bytes:
            artifact.add_reference("file://" + os.path.abspath(path), checksum=False)
            return "reference"
        if os.path.isdir(path):
            artifact.add_dir(path)
        else:
            artifact.add_file(path, name=os.path.basename(path))
        return "uploaded"

    def add_remote(self, artifact, uri):
        """Reference a remote object (s3://, gs://, minio://) as-is: no download, checksum or network.

        wandb's own s3/gs handlers need boto3 / google-cloud-storage and may call the cloud, so the
        entry is written the way wandb tracks URIs it cannot checksum (ref = digest = the URI).
        """
        entry_type = importlib.import_module(
            self.wandb.__name__ + ".sdk.artifacts.artifact_manifest_entry"
        ).ArtifactManifestEntry
        name = uri.rstrip("/").rsplit("/", 1)[-1] or "object"
        artifact.manifest.add_entry(entry_type(path=name, ref=uri, digest=uri))

    def log_output_artifact(self, artifact):
        """log_artifact on the shim's run."""
        if self.active():
            self.run.log_artifact(artifact)

    def use_input_artifact(self, artifact):
        """use_artifact online; offline wandb refuses (TypeError), so the caller keeps a config reference.

        Returns True when W&B recorded it as an input of the run.
        """
        if not self.active() or self._is_offline():
            return False
        try:
            self.run.use_artifact(artifact)
            return True
        except TypeError:
            return False

    def _is_offline(self):
        """True for an offline run (wandb's own setting, whatever the mode requested)."""
        try:
            return bool(self.run.settings._offline)
        except Exception:
            return self.offline_reason is not None

    # --- finish -----------------------------------------------------------------------------------
    def record_failure(self, exc):
        """Put the component's exception type and message in the summary."""
        if not self.active():
            return
        try:
            faults.check("failure")
            message = str(exc)
            if len(message) > SUMMARY_TEXT_LIMIT:
                message = message[:SUMMARY_TEXT_LIMIT] + "..."
            self.update_summary({EXCEPTION_TYPE_KEY: type(exc).__name__, EXCEPTION_MESSAGE_KEY: message})
        except Exception as error:
            say("could not record the component's exception in W&B (" + describe(error) + ")")

    def finish_when_done(self, exc=None):
        """Finish now, or at interpreter exit when user code shares the run (its threads may still log).

        Python joins non-daemon threads before it runs atexit functions, and this one, registered after
        wandb's own, runs before wandb tears itself down.
        """
        if not self.active():
            return
        if self.shared_with_user and exc is None:
            atexit.register(self.finish)
            return
        self.finish(exc)

    def finish(self, exc=None):
        """Finish the run: exit code 0, or what the exception makes the process exit with."""
        if not self.active():
            return
        exit_code = 0 if exc is None else exit_code_of(exc)
        run = self.run
        self._finished = True
        try:
            faults.check("finish")
            run_dir = self._run_dir()
            self._release_run_methods(run)
            type(run).finish(run, exit_code=exit_code)
            if self.offline_reason is not None and run_dir:
                say(
                    "W&B run saved offline in "
                    + run_dir
                    + " ("
                    + self.offline_reason
                    + "); upload it with: wandb sync "
                    + run_dir
                )
        except Exception as error:
            say("could not finish the W&B run (" + describe(error) + ")")
            self._abandon(run)
        finally:
            self._release_user_calls()

    def _abandon(self, run):
        """Best effort to close a run whose finish failed, so the process exits as it would."""
        with contextlib.suppress(Exception):
            self._release_run_methods(run)
            type(run).finish(run, exit_code=1)

    def _run_dir(self):
        """The run's directory (`.../wandb/offline-run-<ts>-<id>`), for the sync hint."""
        try:
            return os.path.dirname(os.path.abspath(self.run.dir))
        except Exception:
            return None


def start_recorder(kind, component, extra):
    """A Recorder for one component call with its run started (config: where the component ran, the
    link back to KFP); None when even that failed, after one line saying so."""
    try:
        recorder = Recorder(kind, component)
        meta = {KFP_META_KEY: kfp_metadata(component, kind, extra)}
        link = kfp_run_link()
        if link:
            meta[KFP_LINK_KEY] = link
        recorder.start(meta)
        return recorder
    except Exception as exc:
        say("could not start recording this component (" + describe(exc) + ")")
        return None


def call_recorded(recorder, func, args, kwargs, before, after):
    """Call func(*args, **kwargs) exactly as the component would, recording around it.

    `before(recorder)` records inputs once the run started; `after(recorder, result)` records outputs.
    With no active recorder (wandb missing, start failed) it only calls func, still hiding its frames.
    Whatever the shim does, the result or exception of func is what the caller gets; the shim's frames
    are hidden from the traceback the process prints.
    """
    recording = recorder is not None and recorder.active()
    try:
        if recording:
            faults.check("inputs")
            before(recorder)
    except Exception as exc:
        say("could not record the component's inputs (" + describe(exc) + ")")
    try:
        result = func(*args, **kwargs)
    except BaseException as exc:
        if recording and recorder.owns_process():  # a forked child leaves the parent's run alone
            with contextlib.suppress(BaseException):
                recorder.record_failure(exc)
                recorder.finish(exc)
        if not isinstance(exc, SystemExit):
            hide_shim_frames_at_exit()
        raise
    if recording and recorder.owns_process():
        try:
            if recorder.active():
                faults.check("outputs")
                after(recorder, result)
        except Exception as exc:
            say("could not record the component's outputs (" + describe(exc) + ")")
        with contextlib.suppress(BaseException):
            recorder.finish_when_done()
    return result
