"""Every shell command in README.md and docs/walkthrough.md runs as written and prints
what the text says it prints (issue 15: the front door tells the truth).

How the documents are read (the conventions they follow):

* Fenced blocks tagged `sh` hold commands, one per line; a command continues over lines
  while a quote is open (curl's JSON bodies) or a line ends in a backslash.
* `# -> TEXT` under a command is what its output contains. Continuation lines start with
  `#` and at least two spaces. `...` stands for anything. Matching ignores whitespace, so
  the compact JSON the service sends matches the spaced JSON the text shows.
* A fenced `text` block right after an `sh` block is the output of that block's last
  command: its lines appear in the output as written; a line `...` skips any lines.

How they are run: the service is started with the README's own command, `scripts/serve`,
on a free loopback port given as MEMTYPE_PORT (so the curl lines' `${MEMTYPE_PORT:-8000}`
reach it); then all commands run in order in one bash from the repository root (shell
variables such as `B=...` carry over), the CLI lines through `scripts/cli` itself. Output
is compared with the port written back as 8000, the default the text shows. Commands that
cannot run here (the test suite itself, Docker, host tracing tools, the benchmarks, the
screenshot script) are listed in SKIP with the reason; any other command runs. Afterwards
the server's log must hold exactly one JSON access line per request and no uvicorn
access line. No network beyond 127.0.0.1. About 10 s once .venv is set up (scripts/test
does that first); in a checkout without .venv, scripts/serve creates it on the way.
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
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "docs" / "walkthrough.md"]
SHELL = {"sh", "bash", "shell"}
SKIP = {
    "scripts/serve": "the server under test: started by this test with MEMTYPE_PORT=<free port>",
    "scripts/test": "the test suite, which this test is part of",
    "scripts/screenshot": "needs Debian chromium and rewrites docs/img/; run by hand",
    "scripts/image": "runs docker build: no Docker engine on our machines",
    "docker ": "no Docker engine on our machines; tests/test_container.py checks the Dockerfile",
    ".venv/bin/python bench/run.py": "the benchmarks take minutes and print figures, not checks",
    "trace-cmd ": "a host tool that needs root and a running VM",
    "perf ": "a host tool that needs root and a running VM",
    "bpftrace ": "a host tool that needs root and a running VM",
    "sudo ": "needs root on a KVM host",
}
DOC_PORT = "8000"


@dataclass
class Command:
    doc: str
    line: int
    text: str
    expect: list[list[str]] = field(default_factory=list)  # each: the lines of one '# ->'
    output: list[str] | None = None  # the following ```text block

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    def skip_reason(self) -> str | None:
        for prefix, why in SKIP.items():
            if self.text.startswith(prefix):
                return why
        return None


def _fences(lines: list[str]):
    """(info string, first content line number, content lines, line number after the fence)."""
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start = i + 1
        j = start
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        yield m.group(1), start + 1, lines[start:j], j + 1
        i = j + 1


def _complete(text: str) -> bool:
    if text.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:  # an open quote: the command goes on
        return False
    return True


def parse(path: Path) -> list[Command]:
    lines = path.read_text(encoding="utf-8").splitlines()
    doc = path.relative_to(ROOT).as_posix()
    out: list[Command] = []
    prev_shell_end: int | None = None
    prev_last: Command | None = None
    for info, first, body, after in _fences(lines):
        if info == "text" and prev_last is not None and prev_shell_end is not None \
                and all(not x.strip() for x in lines[prev_shell_end:first - 2]):
            prev_last.output = body
        prev_last, prev_shell_end = None, None
        if info not in SHELL:
            continue
        cur: list[str] = []
        cur_line = 0
        open_expect: list[str] | None = None
        last: Command | None = None
        for n, line in enumerate(body, first):
            stripped = line.lstrip()
            if not cur:
                if not stripped:
                    open_expect = None
                    continue
                if stripped.startswith("#"):
                    if stripped.startswith("# ->"):
                        assert last is not None, f"{doc}:{n}: '# ->' before any command"
                        open_expect = [stripped[4:]]
                        last.expect.append(open_expect)
                    elif open_expect is not None and re.match(r"^#\s{2,}", stripped):
                        open_expect.append(stripped[1:])
                    else:
                        open_expect = None
                    continue
                cur_line = n
            cur.append(line)
            text = "\n".join(cur)
            if _complete(text):
                last = Command(doc, cur_line, text)
                out.append(last)
                cur, open_expect = [], None
        assert not cur, f"{doc}:{cur_line}: command never ends (open quote?)"
        prev_last, prev_shell_end = last, after
    return out


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def expect_problems(cmd: Command, output: str) -> list[str]:
    bad = []
    flat = _squash(output)
    for exp in cmd.expect:
        pos = 0
        for piece in (_squash(p) for p in " ".join(exp).split("...")):
            if not piece:
                continue
            k = flat.find(piece, pos)
            if k < 0:
                bad.append(f"{cmd.where}: output lacks {piece!r} (after position {pos}) of '# ->{' '.join(exp)}'")
                break
            pos = k + len(piece)
    if cmd.output is not None:
        got = [x.rstrip() for x in output.splitlines()]
        chunks: list[list[str]] = [[]]
        for x in cmd.output:
            if x.strip() == "...":
                chunks.append([])
            else:
                chunks[-1].append(x.rstrip())
        pos = 0
        for chunk in (c for c in chunks if c):
            for k in range(pos, len(got) - len(chunk) + 1):
                if got[k:k + len(chunk)] == chunk:
                    pos = k + len(chunk)
                    break
            else:
                bad.append(f"{cmd.where}: output lacks these lines (in this order):\n  " + "\n  ".join(chunk))
                break
    return bad


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTYPE_")}  # conftest sets some
    env.update(MEMTYPE_PORT=str(port), PIP_DISABLE_PIP_VERSION_CHECK="1", PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        env.pop(proxy, None)  # loopback only
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def test_parser_reads_the_conventions(tmp_path):
    """The reader itself, on a small document: multi-line quotes, '# ->' continuation,
    plain comments, a following text block."""
    doc = ROOT / "docs" / "_parser_probe.md"
    try:
        doc.write_text("x\n\n```sh\nA=1   # a comment\necho '{\n  \"a\": 1}'\n# -> {\"a\":\n#      1}\n"
                       "# plain comment\necho hi\n```\n\n```text\nhi\n```\n")
        cmds = parse(doc)
    finally:
        doc.unlink()
    assert [c.text for c in cmds] == ["A=1   # a comment", "echo '{\n  \"a\": 1}'", "echo hi"]
    assert cmds[1].expect == [[' {"a":', "      1}"]] and cmds[2].output == ["hi"] and cmds[1].output is None
    assert not expect_problems(cmds[1], '{"a": 1}') and expect_problems(cmds[1], '{"a": 2}')
    assert not expect_problems(cmds[2], "x\nhi\n") and expect_problems(cmds[2], "ho\n")


def test_every_documented_command_runs_and_prints_what_the_text_says(tmp_path):
    cmds = [c for d in DOCS for c in parse(d)]
    assert len(cmds) > 20, "the documents' shell blocks were not found"
    run = [c for c in cmds if c.skip_reason() is None]
    skipped = [c for c in cmds if c.skip_reason() is not None]
    assert any(c.text.startswith("scripts/cli ") for c in run) and any("curl " in c.text for c in run)
    for c in skipped:
        assert not c.expect and c.output is None, f"{c.where}: a skipped command shows output: run it or drop that"

    assert shutil.which("curl"), "the documents' curl lines need curl (apt-get install curl)"
    port = _free_port()
    env = _server_env(port)
    log = tmp_path / "serve.log"
    polls = 0
    with open(log, "wb") as fh:
        server = subprocess.Popen(["scripts/serve"], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 180  # a fresh checkout: scripts/setup creates .venv first
        while True:
            assert server.poll() is None, f"scripts/serve exited {server.returncode}:\n{log.read_text()}"
            try:
                with opener.open(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    polls += 1
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, f"scripts/serve did not answer:\n{log.read_text()}"
                time.sleep(0.2)

        script = ["cd " + shlex.quote(str(ROOT))]
        for i, c in enumerate(run):
            script += [f"printf '\\n@@BEGIN {i}@@\\n'", "{", c.text, "} 2>&1", f"printf '\\n@@END {i} %d@@\\n' $?"]
        res = subprocess.run(["bash", "-c", "\n".join(script)], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()

    outputs = {int(m.group(1)): (m.group(2), int(m.group(3)))
               for m in re.finditer(r"@@BEGIN (\d+)@@\n(.*?)\n@@END \1 (\d+)@@", res.stdout, re.S)}
    problems: list[str] = []
    for i, c in enumerate(run):
        if i not in outputs:
            problems.append(f"{c.where}: no output recorded (the shell died?): {res.stderr[-500:]}")
            continue
        out, rc = outputs[i]
        out = out.replace(f"127.0.0.1:{port}", f"127.0.0.1:{DOC_PORT}")
        if rc != 0:
            problems.append(f"{c.where}: exit status {rc}: {c.text.splitlines()[0]}\n{out[-800:]}")
            continue
        if "curl " in c.text:
            try:
                body = json.loads(out)
            except ValueError:
                body = None
            if isinstance(body, dict) and isinstance(body.get("status"), int) and body["status"] >= 400:
                problems.append(f"{c.where}: the service answered {body['status']}: {body.get('detail')}")
        problems += expect_problems(c, out)
    assert not problems, "\n".join(problems)

    # One access-log line per request: the app's JSON line, never uvicorn's own as well.
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    access = [x for x in lines if x.startswith("{") and '"path"' in x]
    uvicorn_access = [x for x in lines if re.search(r'"(GET|POST|HEAD) \S+ HTTP/1\.[01]" \d{3}', x)]
    requests = polls + sum(len(re.findall(r"(^|[\s;|(])curl\s", c.text)) for c in run)
    assert not uvicorn_access, uvicorn_access[:3]
    assert len(access) == requests, (len(access), requests, lines[-5:])
    assert all(json.loads(x)["status"] == 200 for x in access), [x for x in access if '"status":200' not in x]
