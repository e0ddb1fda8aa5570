"""deploy/: every YAML parses; the autoscaler configs pass Ray's own schema and validator; the KubeRay manifests,
the runtime environment, the Dockerfile and every `scaling-sweep` command in deploy/README.md agree with the code.

Offline and fast (a few seconds): nothing is downloaded, no cluster is started. Schemas used: Ray's cluster
config schema (`ray/autoscaler/ray-schema.json` of the installed Ray) and validator, Ray's `RuntimeEnv` parser.
No pip package ships KubeRay's CRD schemas; point KUBERAY_CRDS at a folder holding `ray.io_rayclusters.yaml` and
`ray.io_rayjobs.yaml` (kuberay's ray-operator/config/crd/bases, v1.7.0) to validate against them too. With the
`kubernetes-validate` package installed, the Deployment, Service and ServiceAccounts are validated strictly
against Kubernetes' own schemas.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
README = DEPLOY / "README.md"
CLUSTER_CONFIGS = {"aws": DEPLOY / "aws" / "cluster.yaml", "gcp": DEPLOY / "gcp" / "cluster.yaml"}
KUBERAY = DEPLOY / "kuberay"
# Subcommands the README may use although another change adds them to the CLI.
PENDING_SUBCOMMANDS = {"serve", "resume"}
PLACEHOLDERS = {"YOUR_PROJECT_ID", "YOUR_REGISTRY", "YOUR_BUCKET"}



def _load_pyproject_deps() -> Any:
    """deploy/pyproject_deps.py, loaded from its file (deploy/ is no package and stays off sys.path)."""
    spec = importlib.util.spec_from_file_location("deploy_pyproject_deps", DEPLOY / "pyproject_deps.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pyproject_deps = _load_pyproject_deps()


def deploy_yamls() -> list[Path]:
    """Every YAML under deploy/, without the filled-in *.local.yaml copies the README makes."""
    return sorted(p for p in DEPLOY.rglob("*.yaml") if not p.name.endswith(".local.yaml"))


@cache
def docs(path: Path) -> tuple[dict[str, Any], ...]:
    return tuple(d for d in yaml.safe_load_all(path.read_text()) if d is not None)


def kind(path: Path, name: str) -> dict[str, Any]:
    found = [d for d in docs(path) if d.get("kind") == name]
    assert len(found) == 1, f"{path.name}: expected one {name}, found {len(found)}"
    return found[0]


def ray_version_tag() -> tuple[str, str]:
    import ray

    return ray.__version__, f"py{sys.version_info.major}{sys.version_info.minor}"


# ---- every YAML --------------------------------------------------------------------------------------------------


def test_deploy_has_the_expected_files() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in deploy_yamls()}
    assert names == {"aws/cluster.yaml", "gcp/cluster.yaml", "runtime_env.yaml", "kuberay/raycluster.yaml",
                     "kuberay/rayjob.yaml", "kuberay/fitting-service.yaml"}


@pytest.mark.parametrize("path", deploy_yamls(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_yaml_parses_into_mappings(path: Path) -> None:
    documents = docs(path)
    assert documents, f"{path} is empty"
    assert all(isinstance(d, dict) and d for d in documents)
    if path.parent == KUBERAY:
        for d in documents:
            assert {"apiVersion", "kind", "metadata"} <= d.keys() and d["metadata"].get("name"), d.get("kind")


def test_placeholders_are_known_and_filled_in_by_the_readme() -> None:
    readme_sed = "\n".join(line for line in README.read_text().splitlines() if "sed " in line)
    for path in deploy_yamls():
        found = set(re.findall(r"YOUR_[A-Z_]+", path.read_text()))
        assert found <= PLACEHOLDERS, f"{path.name}: unknown placeholders {found - PLACEHOLDERS}"
        assert all(p in readme_sed for p in found), f"{path.name}: README has no sed for {found}"
    assert not re.findall(r"YOUR_[A-Z_]+", CLUSTER_CONFIGS["aws"].read_text()), "aws config is used as is"


# ---- Ray autoscaler cluster configs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_schema() -> dict[str, Any]:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


@pytest.mark.parametrize("cloud", sorted(CLUSTER_CONFIGS))
def test_cluster_config_passes_rays_schema_and_validator(cloud: str, ray_schema: dict[str, Any]) -> None:
    config = docs(CLUSTER_CONFIGS[cloud])[0]
    jsonschema.validate(config, ray_schema)  # the file as written
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config
    except ImportError:  # pragma: no cover - private API moved
        pytest.skip("ray.autoscaler._private.util is not importable in this Ray")
    # What `ray up` does before it talks to the cloud: fill in the provider's defaults, merge the setup
    # commands, then validate (schema again, head type, sum of min_workers against max_workers).
    validate_config(prepare_config(copy.deepcopy(config)))


@pytest.mark.parametrize("cloud", sorted(CLUSTER_CONFIGS))
def test_cluster_config_shape(cloud: str) -> None:
    config = docs(CLUSTER_CONFIGS[cloud])[0]
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "trials must not land on the head"
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    gpus = sorted(t["resources"].get("GPU", 0) for t in workers.values())
    assert 1 in gpus and 8 in gpus, f"want 1-GPU and 8-GPU worker types, got {gpus}"
    assert any(g == 0 for g in gpus), "CPU-only trials need a CPU worker type"
    for name, t in workers.items():
        assert 0 == t.get("min_workers", 0) <= t["max_workers"] <= config["max_workers"], name
    assert 0 < config["idle_timeout_minutes"] <= 30
    version, py = ray_version_tag()
    assert config["docker"]["image"] == f"rayproject/ray:{version}-{py}-gpu", "image must match the installed Ray"
    # the checkout is mounted and installed on every node; the token reaches every node
    assert config["file_mounts"]["/home/ray/scaling-sweep"] == "."
    assert any("pip install" in c and "-e /home/ray/scaling-sweep" in c for c in config["setup_commands"])
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert any("RAY_AUTH_MODE=token" in c and "ray start" in c for c in config[key]), key
    assert any("--dashboard-host=0.0.0.0" in c for c in config["head_start_ray_commands"])


def test_aws_nodes_have_their_instance_profiles() -> None:
    config = docs(CLUSTER_CONFIGS["aws"])[0]
    for name, t in config["available_node_types"].items():
        expected = "scaling-sweep-head" if name == config["head_node_type"] else "scaling-sweep-worker"
        assert t["node_config"]["IamInstanceProfile"] == {"Name": expected}, name


def test_gcp_gpu_nodes_and_worker_service_account() -> None:
    config = docs(CLUSTER_CONFIGS["gcp"])[0]
    for name, t in config["available_node_types"].items():
        nc = t["node_config"]
        if name != config["head_node_type"]:
            (account,) = nc["serviceAccounts"]
            assert account["email"].startswith("scaling-sweep-worker@"), name
        if t["resources"].get("GPU"):
            # instances.insert takes node_config as its body: scheduling is an object there, not a list
            assert nc["scheduling"]["onHostMaintenance"] == "TERMINATE", name
            assert sum(a["acceleratorCount"] for a in nc["guestAccelerators"]) == t["resources"]["GPU"], name


# ---- runtime environment -----------------------------------------------------------------------------------------


def test_runtime_env_is_accepted_by_rays_parser() -> None:
    from ray.runtime_env import RuntimeEnv

    raw = docs(DEPLOY / "runtime_env.yaml")[0]
    unknown = set(raw) - set(RuntimeEnv.known_fields)
    assert not unknown, f"not runtime_env fields (Ray would treat them as plugins): {unknown}"
    env = RuntimeEnv(**raw)
    assert env.env_vars().get("PYTHONUNBUFFERED") == "1"
    assert "working_dir" not in raw, "the working dir comes from `ray job submit --working-dir .`"
    # Ray runs pip in an empty folder of its own, so a relative path never means the working dir
    # (deploy/README.md, "Code on the cluster").
    for field in ("pip", "uv"):
        spec = raw.get(field) or []
        packages = spec.get("packages", []) if isinstance(spec, dict) else spec
        assert not [p for p in packages if re.search(r"(^|\s)\.(/|\s|$)", p)], f"{field}: relative local path"


# ---- KubeRay -----------------------------------------------------------------------------------------------------


def containers(pod_template: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_template["spec"]["containers"]


def test_raycluster_manifest() -> None:
    path = KUBERAY / "raycluster.yaml"
    cluster = kind(path, "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    version, _ = ray_version_tag()
    assert spec["rayVersion"] == version
    assert spec["enableInTreeAutoscaling"] is True and spec["autoscalerOptions"]["idleTimeoutSeconds"] > 0
    assert spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    (head_container,) = containers(head["template"])
    assert {p["containerPort"] for p in head_container["ports"]} >= {6379, 8265}
    account = kind(path, "ServiceAccount")["metadata"]["name"]
    images = {head_container["image"]}
    gpus_per_group = {}
    for group in spec["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
        (container,) = containers(group["template"])
        images.add(container["image"])
        assert group["template"]["spec"]["serviceAccountName"] == account
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        gpus = int(limits.get("nvidia.com/gpu", 0))
        assert int(requests.get("nvidia.com/gpu", 0)) == gpus, "GPU requests must equal limits"
        gpus_per_group[group["groupName"]] = gpus
        if gpus:
            assert any(t["key"] == "nvidia.com/gpu" for t in group["template"]["spec"].get("tolerations", []))
    assert sorted(gpus_per_group.values()) == [0, 1, 8], gpus_per_group
    assert head["template"]["spec"]["serviceAccountName"] == account
    assert len(images) == 1, f"head and workers must run one image: {images}"


def rayjob() -> dict[str, Any]:
    job = kind(KUBERAY / "rayjob.yaml", "RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    return job


def storage_of_entrypoint(entrypoint: str) -> str:
    argv = shlex.split(entrypoint)
    return argv[argv.index("--storage") + 1]


def test_rayjob_runs_a_sweep_on_the_raycluster() -> None:
    from ray.runtime_env import RuntimeEnv

    from orchestrator.spec import load_spec

    spec = rayjob()["spec"]
    cluster = kind(KUBERAY / "raycluster.yaml", "RayCluster")
    assert spec["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["scaling-sweep", "run"] and argv[2].startswith("orchestrator/sweeps/"), argv
    load_spec(REPO / argv[2])  # the spec it names exists and is valid
    assert re.match(r"(s3|gs)://", storage_of_entrypoint(spec["entrypoint"])), "storage must be object storage"
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    # working_dir is a path in the image (where deploy/Dockerfile puts the project): Ray's parser would look
    # for it on this machine, so it parses the rest
    assert runtime_env.pop("working_dir") == "/home/ray/scaling-sweep"
    RuntimeEnv(**runtime_env)
    assert runtime_env["env_vars"] == docs(DEPLOY / "runtime_env.yaml")[0]["env_vars"]


def test_fitting_service_serves_the_sweeps_storage_read_only() -> None:
    path = KUBERAY / "fitting-service.yaml"
    deployment, service = kind(path, "Deployment"), kind(path, "Service")
    assert deployment["apiVersion"] == "apps/v1" and service["apiVersion"] == "v1"
    pod = deployment["spec"]["template"]
    (container,) = containers(pod)
    argv = container["command"] + container.get("args", [])
    assert argv[:2] == ["scaling-sweep", "serve"], argv
    option = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert option["--host"] == "0.0.0.0"
    # on all interfaces only with a token: a file from a mounted Secret of its own (not the Ray cluster's)
    token_dir, _, token_key = option["--token-file"].rpartition("/")
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == token_dir]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    ray_secret = kind(KUBERAY / "raycluster.yaml", "RayCluster")["metadata"]["name"]
    assert volume["secret"]["secretName"] != ray_secret
    assert f"kubectl create secret generic {volume['secret']['secretName']} --from-literal={token_key}=" in \
        README.read_text(), "the README creates the Secret the Deployment mounts"
    mode = volume["secret"].get("defaultMode", 0o644)
    assert mode & 0o004 or (mode & 0o040 and pod["spec"]["securityContext"].get("fsGroup")), "token unreadable"
    assert option["--results"] == storage_of_entrypoint(rayjob()["spec"]["entrypoint"]), "same storage as the sweep"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == int(option["--port"]) == 8000
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz" and get["port"] in ("http", 8000), probe
    for notes in (pod["metadata"]["annotations"], service["metadata"]["annotations"]):
        assert notes["prometheus.io/scrape"] == "true"
        assert notes["prometheus.io/path"] == "/metrics" and notes["prometheus.io/port"] == "8000"
    # the Service reaches these Pods on that port
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] in (["http"], [8000])
    # read-only: its own identity, read-only keys, nothing writable but /tmp, no GPU
    ray_account = kind(KUBERAY / "raycluster.yaml", "ServiceAccount")["metadata"]["name"]
    assert pod["spec"]["serviceAccountName"] == kind(path, "ServiceAccount")["metadata"]["name"] != ray_account
    assert all("readonly" in ref["secretRef"]["name"] for ref in container.get("envFrom", []))
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})


def kuberay_crd_schema(crd_dir: Path, plural: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are megabytes of YAML
    crd = yaml.load((crd_dir / f"ray.io_{plural}.yaml").read_text(), Loader=loader)  # a safe loader
    return next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]


def unknown_fields(doc: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the structural schema does not declare (what `kubectl apply --validate=strict` rejects)."""
    out: list[str] = []
    if isinstance(doc, dict):
        props = schema.get("properties")
        if props is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
            for key, value in doc.items():
                out += [f"{path}.{key}"] if key not in props else unknown_fields(value, props[key], f"{path}.{key}")
        elif isinstance(schema.get("additionalProperties"), dict):
            for key, value in doc.items():
                out += unknown_fields(value, schema["additionalProperties"], f"{path}.{key}")
    elif isinstance(doc, list) and "items" in schema:
        for i, value in enumerate(doc):
            out += unknown_fields(value, schema["items"], f"{path}[{i}]")
    return out


@pytest.mark.parametrize(("file", "crd_kind", "plural"), [("raycluster.yaml", "RayCluster", "rayclusters"),
                                                          ("rayjob.yaml", "RayJob", "rayjobs")])
def test_kuberay_manifests_against_the_crds(file: str, crd_kind: str, plural: str) -> None:
    crd_dir = os.environ.get("KUBERAY_CRDS")
    if not crd_dir:
        pytest.skip("KubeRay's CRD schemas ship with no pip package; set KUBERAY_CRDS to validate against them")
    schema = kuberay_crd_schema(Path(crd_dir), plural)
    doc = kind(KUBERAY / file, crd_kind)
    jsonschema.Draft7Validator(schema).validate(doc)
    assert not unknown_fields({k: v for k, v in doc.items() if k != "metadata"}, schema)


def test_core_kubernetes_objects_against_kubernetes_schemas() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate to check these too")
    for path in sorted(KUBERAY.glob("*.yaml")):
        for doc in docs(path):
            if not doc["apiVersion"].startswith("ray.io/"):
                kv.validate(doc, kv.latest_version(), strict=True)


# ---- images ------------------------------------------------------------------------------------------------------


def dockerfile_stages() -> list[tuple[str, str, str]]:
    """(base image, stage name, stage text) per FROM, ARGs before the first FROM substituted."""
    text = (DEPLOY / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text.split("\nFROM ", 1)[0], re.M))
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    out = []
    for stage in stages:
        base, _, name = stage.split("\n", 1)[0].partition(" AS ")
        out.append((re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base.strip()), name.strip(), stage))
    return out


def service_exclusions() -> list[str]:
    stage = next(text for _, name, text in dockerfile_stages() if name == "service")
    command = re.search(r"pyproject_deps\.py\s*\\?\s*--without ([^>]+)>", stage)
    assert command, "the service stage leaves the heavy dependencies out with --without"
    return command.group(1).replace("\\", " ").split()


def test_dockerfile_pins_the_installed_ray_and_default_target_is_the_ray_image() -> None:
    version, py = ray_version_tag()
    stages = dockerfile_stages()
    assert [name for _, name, _ in stages] == ["service", "ray"], "the Ray image must be the default (last) target"
    assert stages[-1][0] == f"rayproject/ray:{version}-{py}-gpu"
    assert stages[0][0] == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


def test_pyproject_deps_reads_the_real_pyproject() -> None:
    everything = pyproject_deps.dependencies(REPO / "pyproject.toml")
    names = {pyproject_deps.requirement_name(d) for d in everything}
    assert {"torch", "ray", "fastapi", "pyarrow"} <= names
    light = pyproject_deps.dependencies(REPO / "pyproject.toml", service_exclusions())
    assert {pyproject_deps.requirement_name(d) for d in light} == names - set(service_exclusions())
    assert pyproject_deps.dependencies(REPO / "pyproject.toml", ["Prometheus_Client"]) == [
        d for d in everything if pyproject_deps.requirement_name(d) != "prometheus-client"]
    with pytest.raises(ValueError, match="no-such-package"):
        pyproject_deps.dependencies(REPO / "pyproject.toml", ["no-such-package"])


SERVICE_MODULES = {"torch", "torchaudio", "torchvision", "ray", "sentencepiece", "sacrebleu", "soundfile"}

# `python -m orchestrator.cli --help`, run with the packages the fitting-service image leaves out made
# unimportable, after building the `serve` command and importing the app: one interpreter start for both checks.
CLI_HELP_WITHOUT_HEAVY_PACKAGES = """
import importlib.abc, runpy, sys
BLOCKED = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not in the fitting-service image")
sys.meta_path.insert(0, Block())
from orchestrator.cli import build_parser
build_parser().parse_args(["serve", "--results", "s3://bucket/sweeps/x", "--host", "0.0.0.0"])
import fitting.service.app, fitting.service.server
sys.argv = ["scaling-sweep", "--help"]
runpy.run_module("orchestrator.cli", run_name="__main__")
"""


@cache
def cli_help(block: bool) -> subprocess.CompletedProcess[str]:
    command = ["-c", CLI_HELP_WITHOUT_HEAVY_PACKAGES, ",".join(sorted(SERVICE_MODULES))] if block else [
        "-m", "orchestrator.cli", "--help"]
    return subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_serve_needs_nothing_the_service_image_leaves_out() -> None:
    """`scaling-sweep serve` in the slim image: the CLI and the app import none of the excluded packages."""
    assert {pyproject_deps.requirement_name(n) for n in service_exclusions()} == SERVICE_MODULES  # module = dist
    out = cli_help(block=True)
    assert out.returncode == 0 and "serve" in out.stdout, out.stderr[-3000:]


# ---- deploy/README.md --------------------------------------------------------------------------------------------


@cache
def cli_subcommands() -> frozenset[str]:
    """What `python -m orchestrator.cli --help` lists (run plainly only if the slim-image run failed)."""
    out = cli_help(block=True)
    if out.returncode != 0:
        out = cli_help(block=False)
    assert out.returncode == 0, out.stderr
    listed = re.search(r"\{([a-z,-]+)\}", out.stdout)
    assert listed, out.stdout
    return frozenset(listed.group(1).split(","))


def readme_commands() -> tuple[list[str], list[str]]:
    """`scaling-sweep ...` commands of the README: (from fenced code blocks, from inline code)."""
    text = README.read_text()
    fenced = re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)
    prose = re.sub(r"^```[a-z]*\n.*?^```", "", text, flags=re.M | re.S)
    # up to the end of the shell command: a pipe, redirection, separator, closing quote or comment
    command = re.compile(r"(?<![\w/.=-])scaling-sweep[ \t]+([a-z][^\n|;&>`\"#]*)")
    block_cmds = [m.group(1).strip() for block in fenced for m in command.finditer(block.replace("\\\n", " "))]
    inline_cmds = [m.group(1).strip() for span in re.findall(r"`([^`\n]+)`", prose) for m in command.finditer(span)]
    return block_cmds, inline_cmds


def test_readme_uses_only_real_subcommands_with_valid_options() -> None:
    from orchestrator.cli import build_parser

    known = cli_subcommands() | PENDING_SUBCOMMANDS
    block_cmds, inline_cmds = readme_commands()
    assert len(block_cmds) >= 6 and {c.split()[0] for c in block_cmds} >= {"run", "serve", "resume"}
    for cmd in block_cmds + inline_cmds:
        assert cmd.split()[0] in known, f"unknown subcommand in deploy/README.md: scaling-sweep {cmd}"
    for cmd in block_cmds:  # full commands: the options must parse too (where the subcommand exists yet)
        argv = shlex.split(cmd)
        if argv[0] not in cli_subcommands():
            continue
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"deploy/README.md: `scaling-sweep {cmd}` does not parse ({exc})")


def test_serve_beyond_loopback_always_has_a_token() -> None:
    """Every `scaling-sweep serve` that deploy/ runs on a non-loopback address passes a token (it refuses otherwise)."""
    from fitting.service.auth import is_loopback
    from orchestrator.cli import build_parser

    serve = kind(KUBERAY / "fitting-service.yaml", "Deployment")["spec"]["template"]["spec"]["containers"][0]
    commands = [c for c in readme_commands()[0] if c.startswith("serve ")] + [shlex.join(serve["command"][1:])]
    exposed = [build_parser().parse_args(shlex.split(c)) for c in commands]
    exposed = [args for args in exposed if not is_loopback(args.host)]
    assert len(exposed) >= 4  # the quick path, AWS, Google Cloud, Kubernetes
    for args in exposed:
        assert args.token_file or args.ray_token, f"serve --host {args.host} without --token-file/--ray-token"


def test_yaml_commands_use_real_subcommands() -> None:
    known = cli_subcommands() | PENDING_SUBCOMMANDS
    job = shlex.split(rayjob()["spec"]["entrypoint"])
    serve = kind(KUBERAY / "fitting-service.yaml", "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for argv in (job, serve["command"]):
        assert argv[0] == "scaling-sweep" and argv[1] in known, argv


def test_laptop_to_cluster_section_fits_on_one_screen() -> None:
    lines = README.read_text().splitlines()
    start = lines.index("## From laptop to cluster")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    section = "\n".join(lines[start:end])
    assert end - start <= 45, f"{end - start} lines: more than one screen"
    for step in ("ray up deploy/aws/cluster.yaml", "ray job submit", "--runtime-env deploy/runtime_env.yaml",
                 "scaling-sweep run", "scaling-sweep serve", "/curves/lm", "scaling-sweep resume", "ray down"):
        assert step in section, step
