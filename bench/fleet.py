#!/usr/bin/env python3
"""`make fleet`: a fleet of installs of one app, each a real launch of the
real stub, against nginx on loopback, through a staged release. Figures
and the model built on them: docs/fleet.md.

Each install is a copy of the 1.0 executable in a folder of its own with
its own `ONEFILE_CACHE_DIR`, so each has its own install identity (kept
beside its cache) and its own rollout bucket. The site is made by
`payload-tools publish` and changed by `payload-tools rollout`, as a
publisher would, and nginx serves it as a static host would. Phases:

  0. publish 1.0; launch every install (first launch: unpack, first check)
  1. nothing changed: launch every install (the check of an install that is
     current, against a manifest that did not change)
  2. publish 1.1 with `--rollout 10`: launch every install; between 5% and
     15% must move to 1.1
  3. `rollout --halt`: launch every install; none may move
  4. `rollout --resume` (10% again): launch every install; none may move
     (an install's bucket is stable within a release)
  5. `rollout --percent 100`: launch every install; all must be on 1.1
  6. nothing changed: launch every install (the first check of each new
     build: an install keeps a manifest's validators only from a check that
     its running build settled with nothing to do)
  7. nothing changed: launch every install (all current, each with the
     validators of the manifest it has)

Then, with builds packed with `--report-url` (the reports go to the same
nginx, which answers 404 and logs them in its `combined` log):

  8. publish 1.2 (a good build) with `--rollout 10`: 5% to 15% move
  9. nothing changed; `rollout --halt-if-rollbacks 2` must not halt 1.2
 10. `rollout --percent 100`: all on 1.2
 11. publish 1.3, which crashes at start, with `--rollout 10`: 5% to 15%
     move to it
 12. each install on 1.3 is launched until the launcher rolls it back to
     1.2 (`--rollback-after`, 3 failed starts)
 13. nothing changed: none may take 1.3 again
 then `stats --json` over the `combined` log must report exactly the
 updates (from -> to) and rollbacks the run made, and the checks by version
 that the run's own log shows; `rollout --halt-if-rollbacks 2` must halt
 1.3 (exit status 3) and the manifest say so.

After each phase every install's version is read with `payload-tools
inspect` (which changes nothing), and nginx's access log gives the
requests, their status, the bytes sent (headers and body) and the
conditional headers the installs sent. The run prints a table per phase and
fails (exit 1) on any broken expectation; a part it cannot run with the
binaries it has (no `publish` or `rollout` subcommand, a stub that sends no
conditional request) is reported as NOT RUN, never as passed, and the run
exits 2.

Environment: BIN_DIR (default target/release), FLEET_DIR (default
fleet-work), FLEET_INSTALLS (default 200), FLEET_JOBS (launches at a time,
default 4), FLEET_BUDGET_S (the whole run's bound, default 600), FLEET_KEEP=1
keeps the work folder.
"""

import collections
import concurrent.futures
import json
import math
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse

BIN = os.path.abspath(os.environ.get("BIN_DIR", "target/release"))
WORK = os.path.abspath(os.environ.get("FLEET_DIR", "fleet-work"))
INSTALLS = int(os.environ.get("FLEET_INSTALLS", "200"))
JOBS = int(os.environ.get("FLEET_JOBS", "4"))
KEEP = os.environ.get("FLEET_KEEP") == "1"
TOOLS = os.path.join(BIN, "payload-tools")
STUB = os.path.join(BIN, "bootstrap")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

APP = "FleetApp"
EXE = f"{APP}.bin"
ROLLOUT_PERCENT = 10
# What a 10% rollout of INSTALLS may move. Each run draws new install
# identities and a new salt, so the count is binomial (200 installs: 20 on
# average, standard deviation 4.2). The band leaves out at most 1 in 40,000
# on each side by chance alone (200 installs: 5 to 39), so that the three
# rollouts of a run fail by chance about once in 7,000 runs, while a share
# that is wrong (none, everyone, or a quarter) still fails.
CHANCE_EACH_SIDE = 2.5e-5


def binomial_band(n, share, chance):
    """The lowest and highest counts of n draws at `share` outside which
    each side holds at most `chance` of the probability."""
    mass = [math.comb(n, k) * share**k * (1 - share) ** (n - k) for k in range(n + 1)]
    low, below = 0, 0.0
    while low < n and below + mass[low] <= chance:
        below += mass[low]
        low += 1
    high, above = n, 0.0
    while high > 0 and above + mass[high] <= chance:
        above += mass[high]
        high -= 1
    return low, high


MOVE_LOW, MOVE_HIGH = binomial_band(INSTALLS, ROLLOUT_PERCENT / 100, CHANCE_EACH_SIDE)
# A launch that takes longer has hung: the run fails rather than waits.
LAUNCH_TIMEOUT_S = 60
# The whole run's bound (a run takes well under a minute here): past it,
# no more launches; those left count as failed.
BUDGET_S = float(os.environ.get("FLEET_BUDGET_S", "600"))
DEADLINE = time.monotonic() + BUDGET_S
# The app exits at once: the launcher may wait this long for the update
# the sidecar has under way, so that one launch is one whole update.
EXIT_WAIT_S = 30

FAILURES = []


class OverBudget(Exception):
    """The run went past FLEET_BUDGET_S: the phases left are not run."""

NOT_RUN = []
PHASES = []
# What the run did, as the `updated` and `rolled-back` reports must say.
EXPECTED_UPDATES = collections.Counter()
EXPECTED_ROLLBACKS = collections.Counter()
# What `stats` and `--halt-if-rollbacks` said, for fleet.json.
STATS = {}
# The launcher's default: failed starts of a new build before it is rolled back.
ROLLBACK_AFTER = 3


def fail(message):
    FAILURES.append(message)
    print(f"  FAIL: {message}", flush=True)


def not_run(message):
    NOT_RUN.append(message)
    print(f"  NOT RUN: {message}", flush=True)


def tool(*args, check=True):
    """Runs payload-tools; returns the completed process (output captured)."""
    proc = subprocess.run([TOOLS, *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"payload-tools {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def has_subcommand(name):
    return tool(name, "--help", check=False).returncode == 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the site and its server ------------------------------------------------

class Nginx:
    """nginx serving `root` on loopback as a static host would (ETags,
    ranges, sendfile), configured as the end-to-end tests run it
    (tests/it/nginx.rs), with more fields in its access log: the bytes sent
    with headers, the request's length, the User-Agent and the conditional
    headers."""

    FORMAT = ('\'"$request" $status $body_bytes_sent "$http_range" $bytes_sent $request_length '
              '"$http_user_agent" "$http_if_none_match" "$http_if_modified_since"\'')
    # The same requests in nginx's default `combined` format, for
    # `payload-tools stats` (docs/publishing.md).
    COMBINED = "combined.log"
    LINE = re.compile(r'^"(\S+) (\S+)[^"]*" (\d+) (\d+) "([^"]*)" (\d+) (\d+) "([^"]*)" "([^"]*)" "([^"]*)"$')

    def __init__(self, root, work, port):
        self.port = port
        self.log = os.path.join(work, "logs", "access.log")
        self.combined = os.path.join(work, "logs", self.COMBINED)
        os.makedirs(os.path.join(work, "logs"))
        os.makedirs(os.path.join(work, "tmp"))
        temp = " ".join(f"{kind}_temp_path {work}/tmp;" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"daemon off; master_process off; pid {work}/nginx.pid; error_log {work}/logs/error.log;\n"
                    f"events {{ worker_connections 256; }}\n"
                    f"http {{ log_format fleet {self.FORMAT};\n"
                    f"  access_log {self.log} fleet; access_log {self.combined} combined; sendfile on; {temp}\n"
                    f"  server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n")
        self.proc = subprocess.Popen([NGINX, "-c", conf, "-p", work], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        else:
            self.stop()
            raise SystemExit("nginx did not start")
        if self.proc.poll() is not None:
            with open(os.path.join(work, "logs", "error.log")) as f:
                raise SystemExit(f"nginx did not start:\n{f.read()}")
        self.mark = 0

    def stop(self):
        self.proc.terminate()
        self.proc.wait()

    def since(self):
        """Marks the log's end: `requests()` returns what follows."""
        self.mark = os.path.getsize(self.log) if os.path.exists(self.log) else 0

    def requests(self, everything=False):
        with open(self.log, "rb") as f:
            f.seek(0 if everything else self.mark)
            text = f.read().decode(errors="replace")
        out = []
        for line in text.splitlines():
            m = self.LINE.match(line)
            if not m:
                raise SystemExit(f"unexpected access log line: {line}")
            method, path, status, body, rng, sent, req_len, agent, inm, ims = m.groups()
            out.append({
                "method": method, "path": path, "status": int(status), "body": int(body),
                "range": None if rng == "-" else rng, "sent": int(sent), "request": int(req_len),
                "agent": agent, "if_none_match": inm != "-", "if_modified_since": ims != "-",
            })
        return out


class Site:
    """The published folder: through `payload-tools publish` and `rollout`
    when this payload-tools has them; without `publish`, written by hand
    with `update-toml` (one release offered to everyone: the rollout phases
    cannot run)."""

    def __init__(self, root, base_url, key):
        self.root = root
        self.base_url = base_url
        self.key = key
        self.has_publish = has_subcommand("publish")
        self.has_rollout = has_subcommand("rollout")
        os.makedirs(root)

    def publish(self, build, version, rollout=None):
        if self.has_publish:
            args = ["publish", build, "--site", self.root, "--base-url", self.base_url + "/", "--key", self.key]
            if rollout is not None:
                args += ["--rollout", str(rollout)]
            tool(*args)
            return
        if rollout is not None:
            raise AssertionError("a rollout needs `payload-tools publish`")
        folder = os.path.join(self.root, version)
        os.makedirs(folder)
        shutil.copyfile(build, os.path.join(folder, EXE))
        tmp = os.path.join(self.root, ".update.toml.tmp")
        tool("update-toml", build, "--url", f"{self.base_url}/{version}/{EXE}", "--key", self.key, "-o", tmp)
        os.replace(tmp, os.path.join(self.root, "update.toml"))

    def rollout(self, *args):
        tool("rollout", "--site", self.root, *args, "--key", self.key)


# --- the app and its installs -----------------------------------------------

def pack(version, spec, public_key, previous, out, report_url=None, crash=False, linger=False):
    """A small sample app: a script that prints its version and a 256 KiB
    library that does not change between versions (so an incremental update
    fetches only the script's frame); with `crash`, the script kills itself
    with SIGSEGV at once instead (a build that crashes at start); with
    `linger`, it runs for 0.2 s before it exits, as a real app would: the
    report of a rollback to it is sent by an updater whose app still runs
    (docs/updates.md, "Reports")."""
    app = os.path.join(WORK, "app")
    os.makedirs(os.path.join(app, "lib"), exist_ok=True)
    with open(os.path.join(app, "lib", "data.bin"), "wb") as f:
        rng = random.Random(13)
        f.write(rng.randbytes(128 << 10) + b"onefile fleet " * ((128 << 10) // 14))
    run = os.path.join(app, "run.sh")
    with open(run, "w") as f:
        if crash:
            f.write("#!/bin/sh\nkill -SEGV $$\n")
        elif linger:
            f.write(f'#!/bin/sh\nsleep 0.2\necho "{APP} {version}"\n')
        else:
            f.write(f'#!/bin/sh\necho "{APP} {version}"\n')
    os.chmod(run, 0o755)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    args = ["pack", app, "--entry", "run.sh", "--name", APP, "--version", version,
            "--update-url-spec", spec, "--public-key", public_key,
            "--update-exit-wait", str(EXIT_WAIT_S), "-o", out]
    if previous:
        args += ["--previous", previous]
    if report_url:
        args += ["--report-url", report_url]
    tool(*args)


def install_dir(i):
    return os.path.join(WORK, "installs", f"{i:04}")


def launch(i, phase):
    """One launch of install `i`, traces into its folder; returns
    (install, exit status or None when it hung or was not started, seconds,
    what it printed)."""
    if time.monotonic() > DEADLINE:
        return i, None, 0.0, "over the time budget"
    folder = install_dir(i)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTO_UPDATE", "ONEFILE_"))}
    env.update(ONEFILE_CACHE_DIR=os.path.join(folder, "cache"), AUTO_UPDATE_DEBUG="1")
    start = time.perf_counter()
    with open(os.path.join(folder, f"{phase}.log"), "wb") as log:
        try:
            proc = subprocess.run([os.path.join(folder, EXE)], cwd=folder, env=env, stdout=subprocess.PIPE,
                                  stderr=log, timeout=LAUNCH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return i, None, time.perf_counter() - start, ""
    return i, proc.returncode, time.perf_counter() - start, proc.stdout.decode(errors="replace").strip()


def version_of(i):
    info = tool("inspect", "--json", os.path.join(install_dir(i), EXE), check=False)
    if info.returncode != 0:
        return f"unreadable ({info.stderr.strip()})"
    return json.loads(info.stdout)["version"]


def parallel(fn, items):
    with concurrent.futures.ThreadPoolExecutor(JOBS) as pool:
        yield from pool.map(fn, items)


def versions():
    return dict(zip(range(INSTALLS), parallel(version_of, range(INSTALLS))))


# --- phases -------------------------------------------------------------------

def run_phase(name, nginx, before):
    """Launches every install once, a few at a time; returns the versions
    after, and records the phase's figures. `name` starts with the phase's
    number, which names each install's traces of it (`N.log`)."""
    print(f"\n{name}", flush=True)
    tag = name.split(".")[0]
    nginx.since()
    start = time.perf_counter()
    launches = []
    for n, result in enumerate(parallel(lambda i: launch(i, tag), range(INSTALLS)), 1):
        launches.append(result)
        if n % 50 == 0 or n == INSTALLS:
            print(f"  {n}/{INSTALLS} launched ({time.perf_counter() - start:.1f} s)", flush=True)
    elapsed = time.perf_counter() - start
    after = versions()
    requests = nginx.requests()
    late = [i for i, rc, _, out in launches if rc is None and out == "over the time budget"]
    hung = [i for i, rc, _, out in launches if rc is None and i not in late]
    failed = [i for i, rc, _, _ in launches if rc not in (0, None)]
    if late:
        fail(f"{name}: {len(late)} launches not started: the run is over its budget of {BUDGET_S:.0f} s "
             "(FLEET_BUDGET_S); the phases left are not run")
        raise OverBudget
    if hung:
        fail(f"{name}: {len(hung)} launches hung (over {LAUNCH_TIMEOUT_S} s), e.g. install {hung[0]}")
    if failed:
        fail(f"{name}: {len(failed)} launches exited non-zero, e.g. install {failed[0]} "
             f"(traces: {install_dir(failed[0])}/{tag}.log)")
    # The app prints the version that ran: the one before this launch's
    # update, which takes effect at the next launch.
    wrong = [(i, out) for i, rc, _, out in launches if rc == 0 and out != f"{APP} {before[i]}"]
    if wrong:
        fail(f"{name}: {len(wrong)} launches ran another version than installed, "
             f"e.g. install {wrong[0][0]} printed {wrong[0][1]!r}, {before[wrong[0][0]]} expected")
    checks = [r for r in requests if r["path"].endswith("/update.toml")]
    # Reports go to the same host (phases 8-13's builds, and a report sent
    # late by a launch of the phase before): counted apart from builds.
    reports = [r for r in requests if r["path"].startswith("/report?")]
    builds = [r for r in requests if not r["path"].endswith("/update.toml") and r not in reports]
    moved = sum(1 for i in range(INSTALLS) if after[i] != before[i])
    EXPECTED_UPDATES.update((before[i], after[i]) for i in range(INSTALLS) if after[i] != before[i])
    phase = {
        "phase": name,
        "seconds": elapsed,
        "launch_median_ms": statistics.median(t for _, _, t, _ in launches) * 1e3,
        "launch_max_ms": max(t for _, _, t, _ in launches) * 1e3,
        "checks": len(checks),
        "check_status": dict(sorted(collections.Counter(r["status"] for r in checks).items())),
        "check_conditional": sum(1 for r in checks if r["if_none_match"] or r["if_modified_since"]),
        "check_sent": sum(r["sent"] for r in checks),
        "check_body": sum(r["body"] for r in checks),
        "check_request": sum(r["request"] for r in checks),
        "build_requests": len(builds),
        "build_ranged": sum(1 for r in builds if r["range"]),
        "build_sent": sum(r["sent"] for r in builds),
        "build_body": sum(r["body"] for r in builds),
        "reports": dict(sorted(collections.Counter(
            re.search(r"event=([a-z-]+)", r["path"]).group(1) for r in reports).items())),
        "agents": dict(collections.Counter(r["agent"] for r in checks).most_common(4)),
        "moved": moved,
        "versions": dict(sorted(collections.Counter(after.values()).items())),
    }
    PHASES.append(phase)
    per = phase["checks"] or 1
    print(f"  {elapsed:.1f} s; {phase['checks']} checks {phase['check_status']}, "
          f"{phase['check_conditional']} conditional, {phase['check_sent'] / per:.0f} B sent per check "
          f"({phase['check_body'] / per:.0f} B of body, {phase['check_request'] / per:.0f} B asked); "
          f"build: {phase['build_requests']} requests ({phase['build_ranged']} ranged), {phase['build_sent']:,} B; "
          f"reports {phase['reports'] or 0}; "
          f"moved {moved}; versions {phase['versions']}", flush=True)
    return after


def on(after, version):
    return {i for i, v in after.items() if v == version}


def expect_steady(name, phase):
    """A check when nothing changed: one request, answered 304 without a
    body once the install remembers the manifest's validators."""
    if phase["build_requests"]:
        fail(f"{name}: {phase['build_requests']} build requests when nothing changed")
    if phase["checks"] != INSTALLS:
        fail(f"{name}: {phase['checks']} manifest requests for {INSTALLS} launches (one each expected)")
    if phase["check_conditional"] == 0:
        not_run(f"{name}: 304 on an unchanged manifest: no install sent If-None-Match or If-Modified-Since "
                "(this stub has no conditional requests)")
    elif phase["check_status"].get(304, 0) != phase["checks"]:
        fail(f"{name}: {phase['check_status']} for {phase['checks']} conditional checks (all 304 expected)")
    elif phase["check_body"]:
        fail(f"{name}: 304s with {phase['check_body']} B of body")


def main():
    for path in (TOOLS, STUB):
        if not os.path.exists(path):
            raise SystemExit(f"{path} is missing: run `make build` first")
    if not os.path.exists(NGINX):
        raise SystemExit("nginx is missing: run `make deps FOR=fleet`")
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    started = time.perf_counter()
    print(f"onefile fleet: {INSTALLS} installs, {JOBS} launches at a time, {os.cpu_count()} cores", flush=True)

    keys = os.path.join(WORK, "keys")
    os.makedirs(keys, mode=0o700)
    tool("keygen", "-o", os.path.join(keys, "release"))
    key, public_key = os.path.join(keys, "release.key"), os.path.join(keys, "release.pub")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    spec = f"{base_url}/update.toml"
    builds = {v: os.path.join(WORK, "builds", v, EXE) for v in ("1.0", "1.1", "1.2", "1.3")}
    reports = "--report-url" in tool("pack", "--help").stdout
    report_url = f"{base_url}/report" if reports else None
    if not reports:
        not_run("payload-tools pack has no --report-url: builds send no reports (phases 8-13 not run)")
    pack("1.0", spec, public_key, None, builds["1.0"], report_url)
    pack("1.1", spec, public_key, builds["1.0"], builds["1.1"], report_url)
    if reports:
        pack("1.2", spec, public_key, builds["1.1"], builds["1.2"], report_url, linger=True)
        pack("1.3", spec, public_key, builds["1.2"], builds["1.3"], report_url, crash=True)
    sizes = {v: os.path.getsize(b) for v, b in builds.items() if os.path.exists(b)}
    print(f"builds: 1.0 {sizes['1.0']:,} B, 1.1 {sizes['1.1']:,} B; update URL spec {spec}", flush=True)

    site = Site(os.path.join(WORK, "site"), base_url, key)
    if not site.has_publish:
        not_run("payload-tools has no `publish`: the site is written with `update-toml` (one release for everyone)")
    if not site.has_rollout:
        not_run("payload-tools has no `rollout`: no staged rollout, halt or resume")
    site.publish(builds["1.0"], "1.0")
    for i in range(INSTALLS):
        os.makedirs(install_dir(i))
        shutil.copyfile(builds["1.0"], os.path.join(install_dir(i), EXE))
        os.chmod(os.path.join(install_dir(i), EXE), 0o755)
    nginx = Nginx(site.root, os.path.join(WORK, "nginx"), port)
    try:
        after = staged(site, nginx, builds)
        if reports:
            with_reports(site, nginx, builds, after)
    except OverBudget:
        pass
    finally:
        nginx.stop()

    report(sizes, time.perf_counter() - started)
    if not KEEP and not FAILURES:
        shutil.rmtree(WORK, ignore_errors=True)
    # A run with parts not run is no pass: 2, so that make fails too.
    sys.exit(1 if FAILURES else 2 if NOT_RUN else 0)


def staged(site, nginx, builds):
    start = {i: "1.0" for i in range(INSTALLS)}
    after = run_phase("0. 1.0 published: first launch of every install", nginx, start)
    if on(after, "1.0") != set(start):
        fail(f"first launch: versions {PHASES[-1]['versions']} (all 1.0 expected)")
    after = run_phase("1. nothing changed (all on 1.0)", nginx, after)
    expect_steady("nothing changed (all on 1.0)", PHASES[-1])

    if site.has_publish and site.has_rollout:
        site.publish(builds["1.1"], "1.1", rollout=ROLLOUT_PERCENT)
        after = run_phase(f"2. 1.1 published with --rollout {ROLLOUT_PERCENT}", nginx, after)
        first = on(after, "1.1")
        print(f"  moved to 1.1: {len(first)} of {INSTALLS} ({100 * len(first) / INSTALLS:.1f}%), "
              f"expected {MOVE_LOW} to {MOVE_HIGH}", flush=True)
        if not MOVE_LOW <= len(first) <= MOVE_HIGH:
            fail(f"--rollout {ROLLOUT_PERCENT}: {len(first)} of {INSTALLS} moved (expected {MOVE_LOW} to {MOVE_HIGH})")

        site.rollout("--halt")
        after = run_phase("3. rollout --halt", nginx, after)
        if on(after, "1.1") != first:
            fail(f"after --halt: {len(on(after, '1.1'))} on 1.1, {len(first)} before the halt (no new install may move)")

        site.rollout("--resume")
        after = run_phase(f"4. rollout --resume ({ROLLOUT_PERCENT}% again)", nginx, after)
        if on(after, "1.1") != first:
            fail(f"after --resume: {len(on(after, '1.1'))} on 1.1, {len(first)} before "
                 "(the same share of the same release must offer it to the same installs)")

        site.rollout("--percent", "100")
        after = run_phase("5. rollout --percent 100", nginx, after)
    else:
        not_run(f"phases 2-4: --rollout {ROLLOUT_PERCENT} (5%-15% move), --halt (none move), --resume")
        site.publish(builds["1.1"], "1.1")
        after = run_phase("5. 1.1 published to every install", nginx, after)
    if on(after, "1.1") != set(range(INSTALLS)):
        fail(f"{PHASES[-1]['phase']}: versions {PHASES[-1]['versions']} (all 1.1 expected)")

    after = run_phase("6. nothing changed: the first check of each new build", nginx, after)
    if PHASES[-1]["build_requests"]:
        fail(f"first check of the new builds: {PHASES[-1]['build_requests']} build requests when nothing changed")
    after = run_phase("7. nothing changed (all on 1.1)", nginx, after)
    expect_steady("nothing changed (all on 1.1)", PHASES[-1])
    if on(after, "1.1") != set(range(INSTALLS)):
        fail(f"{PHASES[-1]['phase']}: versions {PHASES[-1]['versions']} (all 1.1 expected)")
    return after


def with_reports(site, nginx, builds, after):
    """Phases 8-13: a good release and a crashing one, both at 10%, the
    reports their installs send, and what `stats` and `rollout
    --halt-if-rollbacks` make of them."""
    if not (site.has_publish and site.has_rollout):
        not_run("phases 8-13 need `publish` and `rollout`")
        return
    site.publish(builds["1.2"], "1.2", rollout=ROLLOUT_PERCENT)
    after = run_phase(f"8. 1.2 (a good build) published with --rollout {ROLLOUT_PERCENT}", nginx, after)
    good = on(after, "1.2")
    if not MOVE_LOW <= len(good) <= MOVE_HIGH:
        fail(f"1.2 at {ROLLOUT_PERCENT}%: {len(good)} of {INSTALLS} moved (expected {MOVE_LOW} to {MOVE_HIGH})")
    after = run_phase("9. nothing changed", nginx, after)
    halt_if_rollbacks(site, nginx, "1.2", halts=False)

    site.rollout("--percent", "100")
    after = run_phase("10. rollout --percent 100 (1.2 to everyone)", nginx, after)
    if on(after, "1.2") != set(range(INSTALLS)):
        fail(f"{PHASES[-1]['phase']}: versions {PHASES[-1]['versions']} (all 1.2 expected)")

    site.publish(builds["1.3"], "1.3", rollout=ROLLOUT_PERCENT)
    after = run_phase(f"11. 1.3 (crashes at start) published with --rollout {ROLLOUT_PERCENT}", nginx, after)
    bad = on(after, "1.3")
    if not MOVE_LOW <= len(bad) <= MOVE_HIGH:
        fail(f"1.3 at {ROLLOUT_PERCENT}%: {len(bad)} of {INSTALLS} moved (expected {MOVE_LOW} to {MOVE_HIGH})")

    print(f"\n12. the {len(bad)} installs on 1.3 launched until rolled back", flush=True)
    start = time.perf_counter()
    launches = collections.Counter()
    for i in sorted(bad):
        while version_of(i) == "1.3" and launches[i] < ROLLBACK_AFTER + 2:
            launches[i] += 1
            _, rc, _, _ = launch(i, f"12-{launches[i]}")
            if rc == 0:
                fail(f"install {i}: a launch of 1.3 (which crashes at start) exited 0")
    stuck = [i for i in bad if version_of(i) != "1.2"]
    if stuck:
        fail(f"{len(stuck)} installs not rolled back to 1.2 after {ROLLBACK_AFTER + 2} launches, e.g. install {stuck[0]} "
             f"({version_of(stuck[0])}, traces: {install_dir(stuck[0])}/12-*.log)")
    EXPECTED_ROLLBACKS[("1.3", "crash")] += len(bad) - len(stuck)
    print(f"  {time.perf_counter() - start:.1f} s; launches per install until rolled back: "
          f"{dict(sorted(collections.Counter(launches.values()).items()))}", flush=True)
    after = versions()
    after = run_phase("13. nothing changed (1.3 is known bad where it crashed)", nginx, after)
    if on(after, "1.3"):
        fail(f"{len(on(after, '1.3'))} installs took 1.3 again after its rollback")

    check_stats(nginx)
    halt_if_rollbacks(site, nginx, "1.3", halts=True)


def check_stats(nginx):
    """`stats --json` over the run's `combined` log against what the run
    did and what its own log shows."""
    print("\nstats --json over the combined log", flush=True)
    proc = tool("stats", "--json", "--app", APP, nginx.combined, check=False)
    if proc.returncode != 0:
        fail(f"stats failed ({proc.returncode}): {proc.stderr.strip()}")
        return
    data = json.loads(proc.stdout)
    updates = collections.Counter()
    rollbacks = collections.Counter()
    checks = collections.Counter()
    for day in data["days"]:
        updates.update({(u["from"], u["to"]): u["count"] for u in day["updated"]})
        rollbacks.update({(r["version"], r["reason"]): r["count"] for r in day["rolled_back"]})
        checks.update(day["checks"])
    own = collections.Counter()
    logged_updates = collections.Counter()
    logged_rollbacks = collections.Counter()
    # The oracle follows the contract (common to the stub and `stats`),
    # not the code: a check is a GET of a `.toml` by an updater answered
    # 200 or 304; a report is a GET by the app's updater, its values
    # percent-decoded.
    for r in nginx.requests(everything=True):
        m = re.match(rf"onefile/\S+ {APP}/(\S+) \(", r["agent"])
        if not m or r["method"] != "GET":
            continue
        if r["path"].split("?", 1)[0].endswith(".toml") and r["status"] in (200, 304):
            own[m.group(1)] += 1
        if r["path"].startswith("/report?"):
            q = dict((urllib.parse.unquote(k), urllib.parse.unquote(v))
                     for k, _, v in (pair.partition("=") for pair in r["path"].split("?", 1)[1].split("&")))
            if q.get("app") != APP:
                continue
            if q.get("event") == "updated":
                logged_updates[(q.get("from"), q.get("to"))] += 1
            elif q.get("event") == "rolled-back":
                logged_rollbacks[(q.get("from"), q.get("reason"))] += 1
    print(f"  updated {dict(sorted(updates.items()))}\n  rolled back {dict(sorted(rollbacks.items()))}\n"
          f"  checks {dict(sorted(checks.items()))}; skipped {data['skipped']}; latest {data['latest']}", flush=True)
    STATS.update(updates={f"{a} -> {b}": n for (a, b), n in sorted(updates.items())},
                 rollbacks={f"{a} ({b})": n for (a, b), n in sorted(rollbacks.items())},
                 checks=dict(sorted(checks.items())))
    # Exactly what reached the host, by the run's own reading of its log.
    if updates != logged_updates:
        fail(f"stats: updates {dict(updates)}, the host logged {dict(logged_updates)}")
    if rollbacks != logged_rollbacks:
        fail(f"stats: rollbacks {dict(rollbacks)}, the host logged {dict(logged_rollbacks)}")
    # And exactly what the run did: a report the launcher could not send
    # before it ended is left pending and sent by the next launch's
    # updater, and every install is launched again after its last move.
    dropped = EXPECTED_UPDATES - updates
    STATS["updated_reports_missing"] = sum(dropped.values())
    if updates != EXPECTED_UPDATES:
        fail(f"stats: updates {dict(updates)}, the run made {dict(EXPECTED_UPDATES)} "
             f"(missing {dict(dropped)}, extra {dict(updates - EXPECTED_UPDATES)})")
    if rollbacks != EXPECTED_ROLLBACKS:
        fail(f"stats: rollbacks {dict(rollbacks)}, the run made {dict(EXPECTED_ROLLBACKS)}")
    if checks != own:
        fail(f"stats: checks by version {dict(checks)}, the run's own log shows {dict(own)}")
    if data["skipped"]:
        fail(f"stats skipped lines of nginx's own log: {data['skipped']}")
    if data["latest"] is None or data["latest"]["version"] != "1.3":
        fail(f"stats: latest release {data['latest']}, 1.3 expected")


def halt_if_rollbacks(site, nginx, version, halts):
    """`rollout --halt-if-rollbacks 2`: exit 3 and a halted manifest when
    `halts`, else exit 0 and the manifest as it was."""
    manifest = os.path.join(site.root, "update.toml")
    with open(manifest) as f:
        before = f.read()
    proc = tool("rollout", "--site", site.root, "--halt-if-rollbacks", "2", "--log", nginx.combined,
                "--key", site.key, check=False)
    print(f"  rollout --halt-if-rollbacks 2 ({version}): exit {proc.returncode}: {proc.stdout.strip()}", flush=True)
    with open(manifest) as f:
        after = f.read()
    STATS.setdefault("halt", []).append({"version": version, "exit": proc.returncode, "said": proc.stdout.strip()})
    if halts:
        if proc.returncode != 3 or "halted = true" not in after:
            fail(f"--halt-if-rollbacks 2 did not halt {version} (exit {proc.returncode}): {proc.stderr.strip()}")
    elif proc.returncode != 0 or after != before:
        fail(f"--halt-if-rollbacks 2 changed the site for {version} (exit {proc.returncode}): {proc.stderr.strip()}")


def report(sizes, total):
    print("\n| phase | time | checks (status) | conditional | sent per check | body per check | asked per check | "
          "build requests (ranged) | build bytes sent | reports | moved | versions after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p in PHASES:
        per = p["checks"] or 1
        status = ", ".join(f"{n}x {s}" for s, n in p["check_status"].items())
        versions = ", ".join(f"{v}: {n}" for v, n in p["versions"].items())
        print(f"| {p['phase']} | {p['seconds']:.1f} s | {p['checks']} ({status}) | {p['check_conditional']} | "
              f"{p['check_sent'] / per:.0f} B | {p['check_body'] / per:.0f} B | {p['check_request'] / per:.0f} B | "
              f"{p['build_requests']} ({p['build_ranged']}) | {p['build_sent']:,} B | "
              f"{', '.join(f'{n}x {e}' for e, n in p['reports'].items()) or 0} | {p['moved']} | {versions} |")
    updated = [p for p in PHASES if p["moved"]]
    if updated:
        moved = sum(p["moved"] for p in updated)
        sent = sum(p["build_sent"] for p in updated)
        print(f"\nbuild bytes per install that moved: {sent / moved:,.0f} B "
              f"({100 * sent / moved / sizes['1.1']:.2f}% of the 1.1 build, {sizes['1.1']:,} B)")
    agents = collections.Counter()
    for p in PHASES:
        agents.update(p["agents"])
    print("User-Agents seen on checks: " + "; ".join(f"{a!r} x{n}" for a, n in agents.most_common(4)))
    with open(os.path.join(WORK, "fleet.json"), "w") as f:
        json.dump({"installs": INSTALLS, "sizes": sizes, "phases": PHASES, "stats": STATS, "seconds": total}, f, indent=1)
    print(f"\ntotal {total:.0f} s")
    for message in NOT_RUN:
        print(f"NOT RUN: {message}")
    for message in FAILURES:
        print(f"FAIL: {message}")
    print("fleet: " + ("FAILED" if FAILURES else "INCOMPLETE (parts not run)" if NOT_RUN else "passed"))


if __name__ == "__main__":
    main()
