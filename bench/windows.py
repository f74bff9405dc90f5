#!/usr/bin/env python3
"""`make bench-windows`: the Windows executables under Wine, against
baselines run the same way in the same run (interleaved, medians), printed
as ratios. Wine adds its own cost to every process start, on both sides.

Cases (each prints one table row):
  1. the release stub's size against its 2 MiB budget
  2. warm start: the packed .exe vs its entry (the probe, `exit 0`) run
     directly, both under Wine
  3. update: 1.0 updating itself to 1.1 (download, checks, the rename dance)
     vs `fetch.exe` (tests/src/bin/fetch.rs), a Windows program doing the
     plain job: GET the build from the same loopback server, write it,
     FlushFileBuffers, rename it over the old one

Needs what `make bench-windows` builds first: the release bootstrap.exe and
payload-tools.exe (`make windows`), probe.exe and fetch.exe. The files are
packed with payload-tools.exe under Wine. The server is nginx, as for
Linux (it answers ranges), or Python's http.server with
BENCH_SERVER=python (no ranges).

Environment: BENCH_DIR (default bench-work-windows), BENCH_QUICK=1 for fewer
runs and a smaller update, BENCH_SERVER=python.
"""

import os
import random
import shlex
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as linux  # noqa: E402  (the servers and the interleaving)

TRIPLE = "x86_64-pc-windows-gnu"
BIN = os.path.abspath(f"target/windows/{TRIPLE}/release")
WORK = os.path.abspath(os.environ.get("BENCH_DIR", "bench-work-windows"))
QUICK = os.environ.get("BENCH_QUICK") == "1"
STUB_BUDGET = 2 * 1024 * 1024
# nginx, as for Linux: a server that answers ranges, so the updater fetches
# the build's end first and checks the payload while it arrives.
SERVER = os.environ.get("BENCH_SERVER", "nginx")
ROWS = []


def toolchain_env():
    """The environment scripts/windows-toolchain.sh prints (Wine's prefix)."""
    out = subprocess.run(["bash", "scripts/windows-toolchain.sh"], check=True, capture_output=True, text=True).stdout
    env = dict(os.environ)
    env.pop("AUTO_UPDATE_DEBUG", None)
    for line in out.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export":
            name, _, value = words[1].partition("=")
            env[name] = value
    return env


ENV = toolchain_env()
WINE = ENV["WINE"]


def win(path):
    """A Linux path as Wine's Windows programs name it (drive Z: is /)."""
    return "Z:" + os.path.abspath(path).replace("/", "\\")


def wine_run(argv, env=None):
    """Runs a Windows program under Wine to completion; returns seconds."""
    # stderr goes to a file, not a pipe: a Wine process that starts Wine's
    # services (after the server stopped) hands them its handles, and they
    # would hold a pipe open for good.
    with open(os.path.join(WORK, "stderr.txt"), "w+b") as err:
        start = time.perf_counter()
        proc = subprocess.run([WINE] + list(argv), env=env or ENV, stdout=subprocess.DEVNULL, stderr=err)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"failed: {argv}\n{err.read().decode(errors='replace')}")
    return elapsed


def row(case, ours, base, goal, verdict):
    ROWS.append((case, ours, base, goal, verdict))
    print(f"  {case}: {ours} vs {base} -> {verdict}", flush=True)


def pack(app, entry, name, version, out, *extra):
    wine_run([os.path.join(BIN, "payload-tools.exe"), "pack", win(app), "--entry", entry, "--name", name,
              "--version", version, "--level", "1", "--stub", win(os.path.join(BIN, "bootstrap.exe")),
              "-o", win(out), *extra])


def bench_stub():
    size = os.path.getsize(os.path.join(BIN, "bootstrap.exe"))
    row("stub size (release bootstrap.exe)", f"{size:,} B", f"{STUB_BUDGET:,} B", "<= 2 MiB",
        f"{size / STUB_BUDGET:.3f} of the budget")


def bench_warm():
    app = os.path.join(WORK, "app")
    os.makedirs(os.path.join(app, "bin"))
    shutil.copy(os.path.join(BIN, "probe.exe"), os.path.join(app, "bin", "probe.exe"))
    exe = os.path.join(WORK, "app.exe")
    pack(app, "bin/probe.exe", "benchw", "1.0", exe)
    cache = os.path.join(WORK, "cache")
    env = dict(ENV, ONEFILE_CACHE_DIR=win(cache))
    wine_run([exe, "exit", "0"], env)  # unpack once
    builds = [d for d in os.listdir(os.path.join(cache, "benchw")) if os.path.isdir(os.path.join(cache, "benchw", d))]
    entry = os.path.join(cache, "benchw", sorted(builds)[0], "bin", "probe.exe")
    runs = 15 if QUICK else 101
    t = linux.interleaved(
        {"packed": lambda: wine_run([exe, "exit", "0"], env), "direct": lambda: wine_run([entry, "exit", "0"], env)},
        runs,
    )
    added = (t["packed"] - t["direct"]) * 1e3
    row(f"warm start under Wine ({runs} runs each)", f"{t['packed']*1e3:.1f} ms",
        f"{t['direct']*1e3:.1f} ms (entry run directly under Wine)", "(ratio)",
        f"{t['packed']/t['direct']:.2f}x (+{added:.1f} ms)")


def bench_update():
    size_mb = 40 if QUICK else 200
    app = os.path.join(WORK, "bigapp")
    os.makedirs(os.path.join(app, "bin"))
    shutil.copy(os.path.join(BIN, "probe.exe"), os.path.join(app, "bin", "probe.exe"))
    with open(os.path.join(app, "data.bin"), "wb") as f:
        f.write(random.Random(1).randbytes(size_mb << 20))
    site = os.path.join(WORK, "site")
    os.makedirs(site)
    if SERVER == "nginx":
        server = "nginx"
        port, stop = linux.start_nginx(site, os.path.join(WORK, "nginx"))
    else:
        server = "Python's http.server"
        port, stop = linux.start_python_server(site)
    try:
        spec = f"http://127.0.0.1:{port}/{{VERSION}}/update.toml"
        for version in ("1.0", "1.1"):
            with open(os.path.join(app, "version.txt"), "w") as f:
                f.write(version)
            os.makedirs(os.path.join(site, version))
            pack(app, "bin/probe.exe", "bigw", version, os.path.join(site, version, "big.exe"),
                 "--update-url-spec", spec, "--update-exit-wait", "600",
                 "--auto-update-toml-file", win(os.path.join(site, version, "update.toml")))
        shutil.copy(os.path.join(site, "1.1", "update.toml"), os.path.join(site, "1.0", "update.toml"))
        old = os.path.join(site, "1.0", "big.exe")
        new = os.path.join(site, "1.1", "big.exe")
        user = os.path.join(WORK, "user")
        os.makedirs(user)
        env = dict(ENV, ONEFILE_CACHE_DIR=win(os.path.join(WORK, "cache-update")))

        def installed(path, traces=None):
            with open(path, "rb") as f, open(new, "rb") as g:
                if os.path.getsize(path) != os.path.getsize(new) or f.read(1 << 16) != g.read(1 << 16):
                    said = open(traces, errors="replace").read() if traces else ""
                    raise SystemExit(f"{path} is not the 1.1 build\n{said}")

        def ours():
            exe = os.path.join(user, "big.exe")
            shutil.copy(old, exe)
            aside = os.path.join(user, ".big.exe.old")
            if os.path.exists(aside):
                os.remove(aside)
            wine_run([exe, "exit", "0"], dict(env, AUTO_UPDATE_DISABLE="1"))  # unpacked outside the timing
            linux.sh("sync")
            # With the updater's traces (a few lines), shown if it failed.
            secs = wine_run([exe, "exit", "0"], dict(env, AUTO_UPDATE_DEBUG="1"))
            installed(exe, os.path.join(WORK, "stderr.txt"))
            return secs

        def fetch():
            # The same start: the old build in place, replaced by the download.
            exe = os.path.join(user, "fetched.exe")
            shutil.copy(old, exe)
            linux.sh("sync")
            secs = wine_run([os.path.join(BIN, "fetch.exe"), f"http://127.0.0.1:{port}/1.1/big.exe", win(exe)])
            installed(exe)
            return secs

        runs = 3 if QUICK else 9
        t = linux.interleaved({"ours": ours, "fetch": fetch}, runs)
        size = os.path.getsize(new) / 1e6
    finally:
        stop()
    row(f"update under Wine ({size:.0f} MB, {server}, {runs} runs each)", f"{size/t['ours']:.0f} MB/s ({t['ours']*1e3:.0f} ms)",
        f"{size/t['fetch']:.0f} MB/s ({t['fetch']*1e3:.0f} ms, fetch.exe: GET, write, flush, rename)", "(ratio)",
        f"{t['fetch']/t['ours']:.2f}x")


def main():
    for exe in ("bootstrap.exe", "payload-tools.exe", "probe.exe", "fetch.exe"):
        if not os.path.exists(os.path.join(BIN, exe)):
            raise SystemExit(f"{BIN}/{exe} is missing: run `make bench-windows`")
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    linux.WORK = WORK  # run.py's helpers write below it
    version = subprocess.run([WINE, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"onefile Windows benchmarks under {version} ({'quick' if QUICK else 'full'}), {os.cpu_count()} cores", flush=True)
    started = time.time()
    # Wine's server stops 3 s after its last process: one that lives for
    # the whole run keeps it up, so that no timed start pays for starting it.
    keeper = subprocess.Popen([WINE, os.path.join(BIN, "probe.exe"), "sleep", "100000"], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wine_run([os.path.join(BIN, "payload-tools.exe"), "--version"])
        bench_stub()
        bench_warm()
        bench_update()
    finally:
        keeper.kill()
        keeper.wait()
    print("\n| case | onefile | baseline | goal | result |\n|---|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")
    print(f"\n({time.time() - started:.0f} s)")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
