"""The one contract between the admission webhook and the runtime shim.

The webhook writes these environment variables and paths into a pod; the shim reads them when the
component runs. Both sides import the names from here, and docs/contract.md describes them. This module
is copied into component images with the shim, so it holds constants only and must stay parseable by
Python 3.7 (no walrus, no positional-only parameters, no match).
"""

# --- Paths inside the component pod -------------------------------------------------------------
#: Where the shared emptyDir (or image volume) is mounted, read-only, in the main container.
SHIM_MOUNT_PATH = "/wandb-shim"
#: Holds nothing but sitecustomize.py; prepended to PYTHONPATH of the main container.
BOOTSTRAP_SUBDIR = "bootstrap"
#: Holds the shim package, importable as SHIM_PACKAGE_NAME.
LIB_SUBDIR = "lib"
#: Holds vendored wandb site directories, one per Python minor ("py3.11"), plus shared files.
SITE_SUBDIR = "site"
#: Suffix of the compat site of a minor ("py3.11-compat"): a wandb that works with an older protobuf.
COMPAT_SITE_SUFFIX = "-compat"
#: Name the shim package is installed under in the pod (not "webhook", which user code may own).
SHIM_PACKAGE_NAME = "wandb_kfp_shim"
#: Name of the init container, the volume and the mount; also how double injection is detected.
INIT_CONTAINER_NAME = "wandb-shim-install"
VOLUME_NAME = "wandb-shim"
#: What the init container runs (argv after the image's entrypoint-less command).
INSTALL_COMMAND = ["wandb-kfp-webhook", "shim", "install", SHIM_MOUNT_PATH]
#: Added to INSTALL_COMMAND, with the minor ("3.7"), when the main container's image names its CPython:
#: only that minor's vendored sites are copied.
INSTALL_PYTHON_FLAG = "--python"
#: Added after INSTALL_PYTHON_FLAG when the pod installs packages that may load an older protobuf: the
#: minor's compat site (site/py3.X-compat) is copied too.
INSTALL_COMPAT_FLAG = "--compat"
#: Volume that holds offline runs when an admin configures a PVC for them.
OFFLINE_VOLUME_NAME = "wandb-offline"

# --- Standard wandb variables the webhook sets (wandb reads them itself) ------------------------
WANDB_API_KEY = "WANDB_API_KEY"
WANDB_BASE_URL = "WANDB_BASE_URL"
WANDB_PROJECT = "WANDB_PROJECT"
WANDB_ENTITY = "WANDB_ENTITY"
WANDB_RUN_GROUP = "WANDB_RUN_GROUP"
WANDB_JOB_TYPE = "WANDB_JOB_TYPE"
WANDB_TAGS = "WANDB_TAGS"
WANDB_RUN_ID = "WANDB_RUN_ID"
WANDB_DIR = "WANDB_DIR"
WANDB_MODE = "WANDB_MODE"
#: Base URL of the KFP UI, as W&B's own @wandb_log integration reads it.
WANDB_KUBEFLOW_URL = "WANDB_KUBEFLOW_URL"
#: The standard variables a container's own envFrom (ConfigMap/Secret) may also set.
STANDARD_WANDB_VARIABLES = (
    WANDB_API_KEY,
    WANDB_BASE_URL,
    WANDB_PROJECT,
    WANDB_ENTITY,
    WANDB_RUN_GROUP,
    WANDB_JOB_TYPE,
    WANDB_TAGS,
    WANDB_RUN_ID,
    WANDB_DIR,
    WANDB_KUBEFLOW_URL,
)
#: When main uses envFrom, the webhook injects each standard variable as DEFAULT_PREFIX + its name, and
#: the shim sets the standard name from it only where the process environment lacks it.
DEFAULT_PREFIX = "WANDB_KFP_DEFAULT_"

# --- Identity and switches for the shim (WANDB_KFP_*) --------------------------------------------
#: What turns a switch below off (SHIM_SWITCH, RUN_LINK), compared lower-cased and stripped.
OFF_VALUES = ("off", "0", "false", "no", "disabled")
#: "off" disables the shim in a pod without removing the injection.
SHIM_SWITCH = "WANDB_KFP_SHIM"
#: The pod kind the webhook classified (see POD_KINDS).
POD_KIND = "WANDB_KFP_POD_KIND"
#: Downward API: metadata.name, metadata.namespace, metadata.uid.
POD_NAME = "WANDB_KFP_POD_NAME"
POD_NAMESPACE = "WANDB_KFP_NAMESPACE"
POD_UID = "WANDB_KFP_POD_UID"
#: KFP run UUID (label pipeline/runid); empty when the pod is not from a KFP run.
KFP_RUN_ID = "WANDB_KFP_RUN_ID"
#: KFP pipeline name, when the pod reveals it.
PIPELINE_NAME = "WANDB_KFP_PIPELINE_NAME"
#: Argo workflow name and node name (annotation workflows.argoproj.io/node-name).
WORKFLOW_NAME = "WANDB_KFP_WORKFLOW"
NODE_NAME = "WANDB_KFP_NODE_NAME"
#: Component spec JSON: KFP v1 from annotation pipelines.kubeflow.org/component_spec (downward API);
#: KFP v2 the launcher's --component_spec, by value (when small enough).
COMPONENT_SPEC = "WANDB_KFP_COMPONENT_SPEC"
#: KFP v1 only: the Argo artifacts of the pod's template as compact JSON
#: `{"inputs": {<path>: <Argo artifact name>}, "outputs": {<path>: <Argo artifact name>}}`, so producer and
#: consumer name a W&B artifact alike (lineage).
ARGO_ARTIFACTS = "WANDB_KFP_ARGO_ARTIFACTS"
#: The webhook leaves ARGO_ARTIFACTS out, and the shim ignores it, above this many characters.
ARGO_ARTIFACTS_MAX_CHARS = 64 * 1024
#: Seconds wandb.init may take before the shim falls back to offline mode.
INIT_TIMEOUT = "WANDB_KFP_INIT_TIMEOUT"
#: Largest local output artifact file, in bytes, the shim uploads (larger ones are logged by reference).
MAX_UPLOAD_BYTES = "WANDB_KFP_MAX_UPLOAD_BYTES"
#: "off" stops the shim printing the online run's URL (`wandb-kfp-shim: W&B run: <url>`) to stderr.
RUN_LINK = "WANDB_KFP_RUN_LINK"
#: Set by the shim in its own process so child processes never start runs of their own.
ACTIVE_MARKER = "WANDB_KFP_SHIM_ACTIVE_PID"
#: "1" makes the bootstrap print its activation decision to stderr (troubleshooting).
SHIM_DEBUG = "WANDB_KFP_SHIM_DEBUG"
#: Where `shim install` finds the vendored wandb payload (in the webhook image).
PAYLOAD_DIR_ENV = "WANDB_KFP_PAYLOAD_DIR"
DEFAULT_PAYLOAD_DIR = "/opt/wandb-kfp-webhook/payload"

DEFAULT_INIT_TIMEOUT_SECONDS = 30
DEFAULT_MAX_UPLOAD_BYTES = 100 * 1024 * 1024
#: Where offline runs are written when WANDB_DIR is not set.
DEFAULT_RUN_DIR = "/tmp/wandb-kfp"  # noqa: S108 - inside the component container, per pod

# --- How a KFP component is recognised (by the webhook in a pod, by the shim in a process) ----------
#: The line of a KFP v1 generated program (`create_component_from_func`) that calls the component
#: function; group 1 is the function's name. A regex source, for `re.compile(..., re.MULTILINE)`.
V1_CALL_PATTERN = r"^_outputs = ([A-Za-z_][A-Za-z0-9_]*)\(\*\*_parsed_args\)"
#: Lines every KFP v1 generated program has, in this order (the bootstrap's cheap check of a script;
#: it repeats them as literals, since it decides before it can read this module: tests keep them equal).
V1_PROGRAM_MARKERS = ("_parsed_args = vars(_parser.parse_args())", "\n_outputs = ", "(**_parsed_args)")
#: `python -m` modules that run a KFP v2 component: kfp >= 2.1, and 2.0.x.
V2_EXECUTOR_MAIN_MODULES = ("kfp.dsl.executor_main", "kfp.components.executor_main")
#: Modules that define the KFP v2 `Executor` class the shim hooks: kfp >= 2.1, and 2.0.x.
V2_EXECUTOR_MODULES = ("kfp.dsl.executor", "kfp.components.executor")

# --- Pod kinds --------------------------------------------------------------------------------------
KIND_V1_COMPONENT = "kfp-v1-component"
KIND_V2_EXECUTOR = "kfp-v2-executor"
KIND_V2_DRIVER = "kfp-v2-driver"
KIND_CACHE_HIT = "kfp-cache-hit"
KIND_ARGO = "argo"
POD_KINDS = (KIND_V1_COMPONENT, KIND_V2_EXECUTOR, KIND_V2_DRIVER, KIND_CACHE_HIT, KIND_ARGO)
#: Kinds whose main container runs a Python component, and so get the shim.
SHIM_KINDS = (KIND_V1_COMPONENT, KIND_V2_EXECUTOR)
#: Kinds that get env only.
ENV_ONLY_KINDS = (KIND_ARGO,)


def bootstrap_dir(mount_path: str = SHIM_MOUNT_PATH) -> str:
    """The directory prepended to PYTHONPATH."""
    return mount_path.rstrip("/") + "/" + BOOTSTRAP_SUBDIR
