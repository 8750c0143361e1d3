"""What must not be loosened: weights loaded without pickle's code execution, YAML without object
construction, an embedded dashboard reachable from this machine only, clusters keeping Ray's token
authentication."""
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("platform", "benchmarks", "experiments", "scripts", "tuning", "cluster")
           for p in (ROOT / d).rglob("*.py")]


def calls(name: str):
    """(file, call text) of every call of ``name`` in the project's sources, argument list included."""
    for path in SOURCES:
        text = path.read_text()
        for m in re.finditer(re.escape(name) + r"\(", text):
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            yield path.relative_to(ROOT), text[m.start():i]


def test_every_torch_load_refuses_pickled_code():
    found = list(calls("torch.load"))
    assert found, "no torch.load found: the scan is broken"
    bad = [f"{p}: {c}" for p, c in found if "weights_only=True" not in c]
    assert not bad, bad


def test_yaml_is_only_read_safely_and_nothing_is_unpickled():
    assert list(calls("yaml.safe_load")), "no yaml.safe_load found: the scan is broken"
    for unsafe in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "pickle.load", "pickle.loads"):
        assert not list(calls(unsafe)), (unsafe, list(calls(unsafe)))


def test_cluster_configs_keep_token_authentication():
    configs = [p for p in (ROOT / "cluster").rglob("*") if p.suffix in (".yaml", ".yml", ".json")]
    assert configs
    for path in configs:
        assert not re.search(r"RAY_AUTH_MODE\W+disabled", path.read_text()), path


def test_the_embedded_dashboard_listens_on_localhost_only():
    code = ("import ray; from moldiff.config import RayConfig; from moldiff.runtime import connect; "
            "connect(RayConfig(num_cpus=1)); print('URL', ray.get_runtime_context().dashboard_url "
            "if hasattr(ray.get_runtime_context(), 'dashboard_url') else ray._private.worker.get_dashboard_url())")
    scratch = tempfile.mkdtemp(prefix="mdsec", dir="/tmp")      # short: Ray's unix sockets live under it
    env = {"PATH": str(Path(sys.executable).parent), "MOLDIFF_DASHBOARD": "1", "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0", "TMPDIR": scratch, "RAY_TMPDIR": scratch,
           "PYTHONPATH": str(ROOT / "platform")}
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    url = re.search(r"^URL (\S+)", proc.stdout, re.M)
    assert url, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert url.group(1).split(":")[0] in ("127.0.0.1", "localhost"), url.group(1)
