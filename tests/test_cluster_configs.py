"""The cluster files are parsed and checked against the package: Ray versions, images, the venv
that the start commands use, the shared volume, and every experiment command in them (its config
or study validates with its overrides, as `experiments/run.py` would)."""
import shlex
from pathlib import Path

import pytest
import ray
import yaml

from moldiff.cli import parse_args
from moldiff.config import load_config
from moldiff.sweep import load_spec, split_overrides

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
LAUNCHERS = ["ray-cluster.yaml", "aws-gpu.yaml"]


def docs(name):
    return [d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d]


def check_run_command(text: str) -> None:
    """``python experiments/run.py ...`` inside a shell command: its config or study and overrides validate."""
    words = shlex.split(text)
    start = words.index("experiments/run.py") + 1
    end = next((i for i in range(start, len(words)) if words[i] in ("&&", ";", "|")), len(words))
    args = parse_args(words[start:end])
    if args.sweep:
        assert (ROOT / args.sweep).is_file(), args.sweep
        overrides = ([args.config] if args.config else []) + args.overrides
        spec_overrides, base_overrides = split_overrides(overrides)
        load_spec(ROOT / args.sweep, spec_overrides, args.only)
        from moldiff.config import apply_overrides, validate_config
        _, base = load_spec(ROOT / args.sweep)
        validate_config(apply_overrides(base, base_overrides))
    else:
        load_config(documented_config(args.config), args.overrides)


def documented_config(path: str) -> Path:
    """A config file, or a run directory the docs refer to (``runs/<name>``, which a clean checkout
    lacks): the experiment config that writes a run of that name."""
    if (ROOT / path).exists() or not path.startswith("runs/"):
        return ROOT / path
    name = Path(path).parts[1]
    for config in sorted((ROOT / "experiments" / "configs").glob("*.yaml")):
        if (yaml.safe_load(config.read_text()) or {}).get("name") == name:
            return config
    raise AssertionError(f"{path}: no experiment config writes a run named {name!r}")


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_configs_start_ray_from_the_venv_they_install(name):
    (cfg,) = docs(name)
    assert cfg["cluster_name"] == "moldiff" and "/opt/moldiff" in cfg["file_mounts"]
    setup = " ".join(cfg["setup_commands"])
    assert "/opt/moldiff/.venv" in setup or "cd /opt/moldiff && python3.11 -m venv .venv" in setup
    for cmd in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]:
        assert cmd.startswith("/opt/moldiff/.venv/bin/ray "), cmd
    assert any("--head" in c for c in cfg["head_start_ray_commands"])
    assert any("$RAY_HEAD_IP:6379" in c for c in cfg["worker_start_ray_commands"])
    for requirement in (w for c in cfg["setup_commands"] for w in shlex.split(c) if w.startswith("requirements/")):
        assert (ROOT / requirement).is_file(), requirement
    assert "/shared" in setup, "a shared mount for runs and data"


def test_aws_config_has_a_cpu_head_and_gpu_workers_on_the_pinned_ray():
    (cfg,) = docs("aws-gpu.yaml")
    types = cfg["available_node_types"]
    assert types[cfg["head_node_type"]]["resources"]["CPU"] == 0
    workers = [t for n, t in types.items() if n != cfg["head_node_type"]]
    assert workers and all(t["resources"].get("GPU", 0) >= 1 for t in workers)
    assert f"ray[default,train,tune,data]=={ray.__version__}" in " ".join(cfg["setup_commands"])
    pyproject = (ROOT / "pyproject.toml").read_text()
    for extra in ("md", "openmm", "qm9", "optuna"):
        assert f"\n{extra} = [" in pyproject, extra
    for line in cfg["setup_commands"]:
        if "pip install torch==" in line:
            assert "torch==2.13.0" in line                           # the version the CPU set pins


def test_kuberay_cluster_and_job_match_the_package():
    cluster = {d["kind"]: d for d in docs("kuberay/raycluster.yaml")}
    spec = cluster["RayCluster"]["spec"]
    assert spec["rayVersion"] == ray.__version__
    pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    claims = {cluster["PersistentVolumeClaim"]["metadata"]["name"]}
    for pod in pods:
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        for container in pod["spec"]["containers"]:
            assert f":{ray.__version__}-py311" in container["image"], container["image"]
            for mount in container["volumeMounts"]:
                assert mount["name"] in volumes and mount["mountPath"] == "/shared"
        assert {v["persistentVolumeClaim"]["claimName"] for v in volumes.values()} <= claims
    assert any(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu")
               for g in spec["workerGroupSpecs"])
    (job,) = docs("kuberay/rayjob.yaml")
    assert job["kind"] == "RayJob" and job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["RayCluster"]["metadata"]["name"]
    assert f":{ray.__version__}-py311" in job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["image"]
    assert "output_dir=/shared/" in job["spec"]["entrypoint"] and "data.root=/shared/" in job["spec"]["entrypoint"]
    check_run_command(job["spec"]["entrypoint"])
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]["OMP_NUM_THREADS"] == "1"


def test_runtime_env_keeps_local_data_out_of_the_upload_and_the_package_in():
    """Judged with Ray's own matchers: the working_dir upload honours .gitignore and the
    runtime env's excludes; py_modules (moldiff itself) get the same excludes relative to the
    package's root. An unanchored "data/" there, and then "/data/", dropped platform/moldiff/data/
    (the submitted job died importing moldiff.data)."""
    import subprocess

    from ray._private.runtime_env.packaging import _get_excludes, _get_ignore_file

    env = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    gitignored = _get_ignore_file(ROOT, ".gitignore")
    for local in (".venv/bin/python", "data/lj13/manifest.json", "runs/dsm_lj13/metrics.json"):
        assert gitignored(ROOT / local), local
    excluded = _get_excludes(ROOT, env["excludes"])
    assert excluded(ROOT / "data" / "lj13" / "data.parquet")
    tracked = subprocess.run(["git", "ls-files", "platform", "experiments", "tuning"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    package = ROOT / "platform" / "moldiff"
    in_package = [ROOT / f for f in tracked if (ROOT / f).is_relative_to(package)]
    assert any(f.parent.name == "data" for f in in_package)
    dropped = [f for f in tracked if excluded(ROOT / f) or gitignored(ROOT / f)]
    excluded_in_package = _get_excludes(package, env["excludes"])
    dropped += [str(f.relative_to(ROOT)) for f in in_package if excluded_in_package(f)]
    assert not dropped, f"package files left out of the job's upload: {dropped[:5]}"
    assert env["env_vars"]["OMP_NUM_THREADS"] == "1"
