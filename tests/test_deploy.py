"""Deploy files, lock files and the read-only root filesystem, checked without a cluster.

Why: a manifest that a cluster rejects, a compose file with a typo, or a lock that misses a
dependency fails at deploy time, on someone else's machine.  Here:

* schema: deploy/k8s.yaml against the Kubernetes OpenAPI schemas that the PyPI package
  ``kubernetes-validate`` bundles (strict: unknown fields are errors), deploy/compose.yaml
  against the compose-spec schema vendored in ``check-jsonschema``; both offline;
* agreement: port, uid, probe paths, shutdown timeout, image version and every MEMTYPE_*
  variable are read from the Dockerfile, app/settings.py and pyproject.toml, not restated;
* locks: every requirement in pyproject.toml is pinned with hashes, the two locks agree,
  and the Dockerfile and scripts/setup install them with --require-hashes;
* read-only: the image's CMD, with the image's environment, serves a mixed set of requests
  from a mount namespace whose root filesystem is read-only (``unshare -m``), and serving
  creates no file under the app directory;
* docs/deploying.md's settings table is the one generated from ``Settings``
  (``python tests/test_deploy.py settings-table`` prints it).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.settings import REPO_ROOT, Settings  # noqa: E402
from tests.test_container import exec_form, healthcheck_argv, parse_stages  # noqa: E402

K8S = ROOT / "deploy" / "k8s.yaml"
COMPOSE = ROOT / "deploy" / "compose.yaml"
CADDYFILE = ROOT / "deploy" / "Caddyfile"
DOC = ROOT / "docs" / "deploying.md"
LOCK = ROOT / "requirements.lock"
TEST_LOCK = ROOT / "requirements-test.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: Oldest Kubernetes minor the manifest must still be valid for, besides the newest.
K8S_OLDEST = "1.29"


# ----------------------------------------------------------------- helpers


def k8s_docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(K8S.read_text()) if d]


def k8s_kind(kind: str) -> dict:
    (doc,) = [d for d in k8s_docs() if d["kind"] == kind]
    return doc


def container() -> dict:
    (c,) = k8s_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def dockerfile_facts() -> dict:
    """Port, uid, liveness path and environment of the image's final stage."""
    final = parse_stages()[-1]
    (expose,) = final.values("EXPOSE")
    uid = final.values("USER")[-1].split(":")[0]
    check = healthcheck_argv(final)[-1]
    path = re.search(r"http://127\.0\.0\.1:%s(/\w+)", check)
    assert path, f"no /path in the HEALTHCHECK: {check}"
    return {"port": int(expose), "uid": int(uid), "health": path.group(1), "env": final.env(),
            "stage": final}


def env_var(field: str) -> str:
    return f"MEMTYPE_{field.upper()}"


SETTING_VARS = {env_var(f): f for f in Settings.model_fields}


def settings_from(env: dict[str, str]) -> Settings:
    """Settings built from these MEMTYPE_* values only (raises if one is invalid)."""
    unknown = sorted(set(env) - set(SETTING_VARS))
    assert not unknown, f"not settings in app/settings.py: {unknown}"
    return Settings(**{SETTING_VARS[k]: v for k, v in env.items()})


def _script(name: str) -> str:
    exe = shutil.which(name) or str(Path(sys.prefix) / "bin" / name)
    assert Path(exe).exists(), f"{name} missing: install the test extra"
    return exe


# ------------------------------------------------------------------ schema


@pytest.mark.parametrize("version", [K8S_OLDEST, kubernetes_validate.latest_version()])
def test_k8s_manifest_valid_strict(version: str) -> None:
    kinds = []
    for doc in k8s_docs():
        kubernetes_validate.validate(doc, version, strict=True)
        kinds.append(doc["kind"])
    assert sorted(kinds) == ["Deployment", "PodDisruptionBudget", "Service"]


def test_k8s_validator_rejects_a_broken_manifest() -> None:
    """The validator really checks: a wrong type and an unknown field are errors."""
    deploy = k8s_kind("Deployment")
    deploy["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deploy, kubernetes_validate.latest_version(), strict=True)
    deploy = k8s_kind("Deployment")
    deploy["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deploy, kubernetes_validate.latest_version(), strict=True)


def _check_compose(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_script("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120, check=False)


def test_compose_file_valid() -> None:
    done = _check_compose(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    bad = compose()
    bad["services"]["memtype"]["expose"] = {"port": 8000}
    bad["services"]["proxy"]["portz"] = ["8080:8080"]
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(bad))
    done = _check_compose(path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "memtype.expose" in done.stdout and "portz" in done.stdout, done.stdout


# --------------------------------------------------------------- agreement


def test_k8s_port_uid_and_probes_agree_with_the_image() -> None:
    facts = dockerfile_facts()
    c = container()
    pod = k8s_kind("Deployment")["spec"]["template"]["spec"]
    (port,) = c["ports"]
    assert port["containerPort"] == facts["port"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert int(env.get("MEMTYPE_PORT", facts["env"]["MEMTYPE_PORT"])) == facts["port"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] == port["name"], probe
    assert c["livenessProbe"]["httpGet"]["path"] == facts["health"]
    assert c["startupProbe"]["httpGet"]["path"] == facts["health"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == facts["uid"] != 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"requests", "limits"} <= set(c["resources"])
    assert k8s_kind("Deployment")["spec"]["replicas"] >= 2
    svc = k8s_kind("Service")
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == [port["name"]]
    assert svc["spec"]["selector"] == k8s_kind("Deployment")["spec"]["selector"]["matchLabels"]


def test_k8s_env_are_valid_settings_and_shutdown_fits_the_grace_period() -> None:
    env = {e["name"]: e["value"] for e in container()["env"]}
    assert {"MEMTYPE_PUBLIC_URL", "MEMTYPE_FORWARDED_ALLOW_IPS"} <= set(env)
    s = settings_from(env)
    assert s.public_url.startswith("https://")
    assert s.workers == 1  # scale by replicas
    grace = k8s_kind("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > s.timeout_graceful_shutdown
    # The probes' timeouts leave room for an answer the pool cannot delay.
    assert container()["livenessProbe"]["timeoutSeconds"] >= 1


def test_image_versions_agree_with_pyproject() -> None:
    version = PYPROJECT["project"]["version"]
    assert container()["image"].endswith(f":{version}")
    assert compose()["services"]["memtype"]["image"].endswith(f":{version}")
    # the label takes the version as a build argument (scripts/image reads pyproject):
    # no second copy of the number in the Dockerfile
    label = next(v for v in dockerfile_facts()["stage"].values("LABEL") if "image.version" in v)
    assert 'org.opencontainers.image.version="${VERSION}"' in label
    assert version not in (ROOT / "Dockerfile").read_text()
    assert "VERSION=$version" in (ROOT / "scripts" / "image").read_text()
    from app.render import version as app_version
    assert app_version() == version


def test_compose_only_the_authenticating_proxy_is_published() -> None:
    facts = dockerfile_facts()
    services = compose()["services"]
    published = sorted(name for name, svc in services.items() if svc.get("ports"))
    assert published == ["proxy"]
    app_svc, proxy = services["memtype"], services["proxy"]
    assert int(app_svc["user"]) == facts["uid"]
    assert [int(p) for p in app_svc["expose"]] == [facts["port"]]
    assert app_svc["read_only"] is True and proxy["read_only"] is True
    s = settings_from(app_svc["environment"] | {"MEMTYPE_PUBLIC_URL": "http://localhost:8080"})
    assert s.port == facts["port"]
    # Forwarded headers are believed from the proxy's fixed address, and only from it.
    assert s.forwarded_allow_ips == proxy["networks"]["back"]["ipv4_address"]
    assert list(app_svc["networks"]) == ["back"]
    assert compose()["networks"]["back"]["internal"] is True
    (cfg,) = proxy["configs"]
    assert compose()["configs"][cfg["source"]]["file"] == "./" + CADDYFILE.name


def test_caddyfile_authenticates_then_proxies_to_the_service_port() -> None:
    text = "\n".join(ln.split("#")[0] for ln in CADDYFILE.read_text().splitlines())
    body = text[text.index(":8080 {"):]
    assert body.index("basic_auth") < body.index("reverse_proxy")
    assert re.search(rf"reverse_proxy\s+memtype:{dockerfile_facts()['port']}\b", body)
    proxy_env = compose()["services"]["proxy"]["environment"]
    for var in re.findall(r"\{\$(\w+)\}", body):
        assert var in proxy_env, f"Caddyfile uses {var}, compose does not set it"
    assert ":8080" in compose()["services"]["proxy"]["ports"][0]


@pytest.mark.anyio
async def test_probe_paths_answer_in_the_app(client) -> None:
    c = container()
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        r = await client.get(c[probe]["httpGet"]["path"])
        assert r.status_code == 200 and r.json() == {"status": "ok"}, probe


# -------------------------------------------------------------------- locks


def _lock_pins(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of a pip-compile --generate-hashes file."""
    text = path.read_text().replace("\\\n", " ")
    pins: dict[str, tuple[str, int]] = {}
    for line in text.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, *opts = line.split(" --hash=")
        req = Requirement(spec.strip())
        (s,) = req.specifier
        assert s.operator == "==", f"{path.name}: {line[:60]} is not pinned"
        assert opts and all(o.startswith("sha256:") for o in opts), f"{path.name}: {req.name} has no hashes"
        pins[canonicalize_name(req.name)] = (s.version, len(opts))
    return pins


def test_locks_pin_every_requirement_with_hashes() -> None:
    runtime, test = _lock_pins(LOCK), _lock_pins(TEST_LOCK)
    build = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    direct = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    extra = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]]
    for lock, reqs in ((runtime, direct + build), (test, direct + build + extra)):
        for req in reqs:
            name = canonicalize_name(req.name)
            assert name in lock, f"{req} is not in the lock: run scripts/lock"
            assert req.specifier.contains(lock[name][0]), f"{req} vs pin {lock[name][0]}: run scripts/lock"
    # The test lock is the runtime lock plus the test extra: same versions where both pin.
    differ = {n: (v, test[n][0]) for n, (v, _) in runtime.items() if n in test and test[n][0] != v}
    assert not differ, differ
    assert set(runtime) <= set(test)


def test_image_and_setup_install_the_locks_with_hashes() -> None:
    builder = parse_stages()[0]
    runs = " ".join(builder.values("RUN"))
    assert f"--require-hashes --no-deps -r {LOCK.name}" in runs
    assert "--no-deps --no-build-isolation ." in runs
    assert any(LOCK.name in shlex.split(v) for v in builder.values("COPY"))
    # No pip or setuptools left in the venv the runtime stage copies, nor in the base.
    assert "pip uninstall -y setuptools" in runs and "pip uninstall -y pip" in runs
    final_runs = " ".join(parse_stages()[-1].values("RUN"))
    assert "pip uninstall -y pip" in final_runs
    setup = (ROOT / "scripts" / "setup").read_text()
    assert "--require-hashes --no-deps -r" in setup
    assert TEST_LOCK.name in setup and LOCK.name in setup
    assert "pip-compile" in (ROOT / "scripts" / "lock").read_text()


# ---------------------------------------------------------------- read-only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _can_make_root_read_only() -> bool:
    if not shutil.which("unshare"):
        return False
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                           "mount -o remount,bind,ro / && ! touch /.memtype-ro-probe 2>/dev/null"],
                          capture_output=True, timeout=20, check=False)
    return done.returncode == 0


MIXED = [
    ("GET", "/", None),
    ("GET", "/healthz", None),
    ("GET", "/readyz", None),
    ("GET", "/docs", None),
    ("GET", "/openapi.json", None),
    ("GET", "/api/v1/kernels", None),
    ("POST", "/api/v1/resolve", {"kernel": "v6.7", "gpa": "0xfee00000"}),
    ("POST", "/api/v1/map", {"kernel": "v6.7", "pat_index": 1}),
    ("POST", "/api/v1/zap", {"kernel": "v6.7", "event": {"kind": "cr0_cd", "value": True}}),
    ("POST", "/api/v1/diff", {"a": "v4.2", "b": "v6.7", "limit": 5}),
    ("POST", "/api/v1/replay", {"generator": "ovmf", "vcpus": 2}),
    ("POST", "/api/v1/permalink", {"kernel": "v6.7", "gpa": "0x1000"}),
]


def _serve_like_the_image(tmp_path: Path, wrap: list[str]) -> tuple[dict[str, int], str, int]:
    """The image's CMD with the image's ENV (WORKDIR -> the repo), inside `wrap`; answers
    MIXED plus the page's hashed assets; returns statuses, the log and the exit code."""
    facts = dockerfile_facts()
    final = facts["stage"]
    (workdir,) = final.values("WORKDIR")
    env = {k: v.replace(workdir, str(ROOT)) for k, v in facts["env"].items() if k != "PATH"}
    port = _free_port()
    env = {**os.environ, **env, "MEMTYPE_HOST": "127.0.0.1", "MEMTYPE_PORT": str(port),
           "PYTHONPATH": str(ROOT)}
    (cmd_value,) = final.values("CMD")
    cmd = exec_form(cmd_value)
    assert cmd[0] == "python"
    log = tmp_path / "server.log"
    statuses: dict[str, int] = {}
    with log.open("wb") as out:
        server = subprocess.Popen([*wrap, sys.executable, *cmd[1:]], cwd=ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 30
            while True:
                assert server.poll() is None, f"server exited:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"server never answered:\n{log.read_text()}"
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            page = ""
            for method, path, body in MIXED:
                r = client.request(method, path, json=body)
                statuses[f"{method} {path}"] = r.status_code
                page = page or r.text
            assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page)
            assert assets, "the page names no hashed asset"
            for path in assets:
                statuses[f"GET {path}"] = client.get(path).status_code
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
    return statuses, log.read_text(), server.returncode


def _tree(*dirs: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for d in dirs for p in sorted(d.rglob("*"))}


@pytest.mark.skipif(not _can_make_root_read_only(),
                    reason="cannot make / read-only in a mount namespace here (needs root and unshare)")
def test_serves_from_a_read_only_root_filesystem(tmp_path: Path) -> None:
    # The log goes to a file opened before the namespace turns read-only (like a container's
    # stdout); everything the server itself might write would hit EROFS.
    wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount -o remount,bind,ro / && exec "$@"', "ro"]
    statuses, log, code = _serve_like_the_image(tmp_path, wrap)
    assert set(statuses.values()) == {200}, statuses
    assert "Read-only file system" not in log and "Traceback" not in log, log
    assert code == 0, log


def test_serving_creates_no_file_under_the_app(tmp_path: Path) -> None:
    dirs = [ROOT / "app", ROOT / "templates", ROOT / "static"]
    before = _tree(*dirs)
    statuses, log, code = _serve_like_the_image(tmp_path, [])
    assert set(statuses.values()) == {200}, statuses
    assert code == 0, log
    after = _tree(*dirs)
    assert after == before, sorted(set(after.items()) ^ set(before.items()))[:10]


# --------------------------------------------------------------------- docs


def _default(field: str) -> str:
    info = Settings.model_fields[field]
    value = info.default
    if field == "root" and value == REPO_ROOT:
        return "the checkout (`app/..`)"
    if value == "":
        return "(empty)"
    return f"`{value}`"


def settings_table() -> str:
    """The markdown table of every MEMTYPE_* setting, from app/settings.py."""
    rows = ["| Variable | Default | What it does |", "| --- | --- | --- |"]
    for field, info in Settings.model_fields.items():
        text = " ".join((info.description or "").split()).replace("|", "\\|")
        rows.append(f"| `{env_var(field)}` | {_default(field)} | {text} |")
    return "\n".join(rows)


def test_docs_settings_table_matches_settings() -> None:
    doc = DOC.read_text()
    start, end = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
    table = doc[doc.index(start) + len(start):doc.index(end)].strip()
    assert table == settings_table(), (
        "docs/deploying.md's settings table is stale; paste the output of "
        "`python tests/test_deploy.py settings-table`")


def test_docs_mention_every_deploy_file() -> None:
    doc = DOC.read_text()
    for name in ("deploy/k8s.yaml", "deploy/compose.yaml", "deploy/Caddyfile", "scripts/lock",
                 LOCK.name, TEST_LOCK.name, "MEMTYPE_FORWARDED_ALLOW_IPS", "MEMTYPE_PUBLIC_URL"):
        assert name in doc, name


if __name__ == "__main__":
    if sys.argv[1:] == ["settings-table"]:
        print(settings_table())
    else:
        sys.exit("usage: python tests/test_deploy.py settings-table")
