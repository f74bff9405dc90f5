#!/usr/bin/env python3
"""`make bench`: onefile against the baselines a user would compare it with,
measured side by side in the same run (interleaved, medians), printed as
ratios. Absolute times on a shared machine vary; the ratios are the result.

Cases (each prints one table row, or a few):
  1. warm start: packed executable vs the unpacked entry run directly
  2. cold start: first launch vs `zstd -dc payload.tar.zst | tar -x`
  3. pack: `payload-tools pack` vs `tar -c | zstd -T0` at the same level,
     and packed size vs stub + that .tar.zst; payload size (stub
     excluded) vs that .tar.zst at levels 9 and 19, and on a tree of
     50,000 small files
  4. update: download + verify + install of a ~200 MB build from nginx on
     loopback vs `curl -o` from the same server (and, for context, from
     Python's http.server, which serves no ranges); peak RSS of the launcher
  5. peak RSS of a cold start of a 1 GiB payload, and the stub's size

Environment: BIN_DIR (default target/release), BENCH_DIR (default
bench-work), BENCH_QUICK=1 for fewer runs and smaller inputs.
"""

import http.server
import os
import random
import shutil
import socket
import socketserver
import statistics
import subprocess
import sys
import threading
import time

BIN = os.path.abspath(os.environ.get("BIN_DIR", "target/release"))
WORK = os.path.abspath(os.environ.get("BENCH_DIR", "bench-work"))
QUICK = os.environ.get("BENCH_QUICK") == "1"
TOOLS = os.path.join(BIN, "payload-tools")
STUB = os.path.join(BIN, "bootstrap")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
LEVEL = "9"
ROWS = []


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def run_measured(argv, env=None, rss=False):
    """Runs argv to completion; returns (seconds, peak RSS in KiB or None).

    Peak RSS comes from GNU time, a small process of its own: a child forked
    by this (large) Python process would carry Python's RSS in its figure."""
    rss_file = os.path.join(WORK, "rss.txt")
    if rss:
        argv = ["/usr/bin/time", "-f", "%M", "-o", rss_file] + list(argv)
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {argv}")
    if rss:
        with open(rss_file) as f:
            return elapsed, int(f.read().split()[-1])
    return elapsed, None


def interleaved(cases, runs, prepare=None):
    """Runs each case `runs` times, alternating; returns medians (seconds)."""
    times = {name: [] for name in cases}
    for _ in range(runs):
        for name, fn in cases.items():
            if prepare:
                prepare(name)
            times[name].append(fn())
    return {name: statistics.median(t) for name, t in times.items()}


def row(case, ours, base, goal, verdict):
    ROWS.append((case, ours, base, goal, verdict))
    print(f"  {case}: {ours} vs {base} -> {verdict}", flush=True)


def make_tree(root, total_mb, files):
    """A realistic app folder: many small text-like modules, some binary
    libraries, a few large files; deterministic."""
    rng = random.Random(42)
    os.makedirs(root)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(2, 10))) for _ in range(2000)]
    budget = total_mb << 20
    big = [budget // 8, budget // 10, budget // 12]
    for i, size in enumerate(big):
        path = os.path.join(root, "lib", f"libbig{i}.so")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(rng.randbytes(size // 2) + bytes(size - size // 2))
    rest = budget - sum(big)
    per = rest // files
    for i in range(files):
        path = os.path.join(root, "lib", f"pkg{i % 40}", f"mod{i}.py" if i % 5 else f"ext{i}.so")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        size = max(64, int(rng.expovariate(1 / per)))
        with open(path, "wb") as f:
            if i % 5:
                out = bytearray()
                while len(out) < size:
                    out += b" ".join(rng.choice(words) for _ in range(12)) + b"\n"
                f.write(out[:size])
            else:
                f.write(rng.randbytes(size))
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy("/bin/true", os.path.join(root, "bin", "app"))


def make_small_tree(root, files):
    """A node_modules-like folder: `files` small JavaScript, JSON and
    Markdown files of similar text (25 per package); deterministic."""
    rng = random.Random(7)
    words = ["function", "return", "const", "var", "let", "require", "module", "exports",
             "this", "if", "else", "for", "while", "new", "null", "undefined", "true", "false",
             "typeof", "prototype", "length", "push", "call", "apply", "Object", "Array",
             "String", "options", "callback", "err", "value", "key", "index", "result"]
    words += ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 12))) for _ in range(3000)]
    os.makedirs(root)
    n = 0
    while n < files:
        pkg = os.path.join(root, "node_modules", f"pkg{n // 25}")
        name = rng.choice(words)
        i = n % 25
        if i == 0:
            deps = ",\n".join('    "%s": "^%d.%d.0"' % (rng.choice(words), rng.randint(0, 9), rng.randint(0, 9)) for _ in range(rng.randint(0, 6)))
            path = os.path.join(pkg, "package.json")
            text = '{\n  "name": "%s",\n  "version": "%d.%d.%d",\n  "main": "index.js",\n  "license": "MIT",\n  "dependencies": {\n%s\n  }\n}\n' % (
                name, rng.randint(0, 9), rng.randint(0, 20), rng.randint(0, 30), deps)
        elif i == 1:
            path = os.path.join(pkg, "README.md")
            text = "# %s\n\n" % name + " ".join(rng.choice(words) for _ in range(rng.randint(20, 300))) + "\n"
        else:
            path = os.path.join(pkg, "lib", f"{rng.choice(words)}{i}.js")
            lines = ["'use strict';", "", "var %s = require('%s');" % (rng.choice(words), rng.choice(words))]
            for _ in range(int(rng.expovariate(1 / 18)) + 2):
                lines.append("  %s %s = %s(%s, %s);" % (rng.choice(words[:8]), rng.choice(words), rng.choice(words), rng.choice(words), rng.choice(words)))
            lines.append("module.exports = %s;" % rng.choice(words))
            text = "\n".join(lines) + "\n"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(text)
        n += 1
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy("/bin/true", os.path.join(root, "bin", "app"))


def payload_len(exe):
    import json
    info = subprocess.run([TOOLS, "inspect", "--json", exe], check=True, capture_output=True, text=True).stdout
    return json.loads(info)["payload_len"]


def bench_packed_size():
    """Payload bytes (stub excluded) vs `tar -c | zstd -T0` of the same tree
    at the same level: what independent frames cost in ratio."""
    tree = os.path.join(WORK, "tree")  # made by bench_tree
    small = os.path.join(WORK, "small-tree")
    files = 10000 if QUICK else 50000
    make_small_tree(small, files)
    cases = [(tree, "bench tree", "9", "<= 1.01x"), (small, f"{files:,} small files", "9", "<= 1.05x")]
    if not QUICK:
        cases.append((tree, "bench tree", "19", "<= 1.02x"))
    for root, what, level, goal in cases:
        exe = os.path.join(WORK, "size.bin")
        ref = os.path.join(WORK, "size.tar.zst")
        sh(f"'{TOOLS}' pack '{root}' --entry bin/app --name size --level {level} -o '{exe}' 2>/dev/null")
        sh(f"tar -C '{root}' -c . | zstd -q -T0 -{level} -o '{ref}' -f")
        ours, base = payload_len(exe), os.path.getsize(ref)
        row(f"payload size, {what}, level {level}", f"{ours:,} B", f"{base:,} B (tar -c | zstd -T0 -{level})", goal, f"{ours/base:.4f}x")
    shutil.rmtree(small, ignore_errors=True)


def payload_of(exe, out):
    info = subprocess.run([TOOLS, "inspect", "--json", exe], check=True, capture_output=True, text=True).stdout
    import json
    d = json.loads(info)
    with open(exe, "rb") as f, open(out, "wb") as o:
        f.seek(d["payload_offset"])
        o.write(f.read(d["payload_len"]))


def bench_tree():
    tree = os.path.join(WORK, "tree")
    mb, files = (10, 300) if QUICK else (40, 1000)
    make_tree(tree, mb, files)
    exe = os.path.join(WORK, "app.bin")
    cache = os.path.join(WORK, "cache")
    env = dict(os.environ, ONEFILE_CACHE_DIR=cache)
    env.pop("AUTO_UPDATE_DEBUG", None)
    runs = 5 if QUICK else 15

    # 3. pack vs tar | zstd -T0
    tarzst = os.path.join(WORK, "tree.tar.zst")
    t = interleaved(
        {
            "pack": lambda: run_measured([TOOLS, "pack", tree, "--entry", "bin/app", "--name", "bench", "--level", LEVEL, "-o", exe])[0],
            "tar": lambda: run_measured(["sh", "-c", f"tar -C '{tree}' -c . | zstd -q -T0 -{LEVEL} -o '{tarzst}' -f"])[0],
        },
        3 if QUICK else 5,
    )
    ratio = t["pack"] / t["tar"]
    row(f"pack time ({mb} MB, {files:,} files)", f"{t['pack']*1e3:.0f} ms", f"{t['tar']*1e3:.0f} ms (tar|zstd -T0 -{LEVEL})", "<= 1.00x", f"{ratio:.2f}x")
    packed = os.path.getsize(exe)
    base = os.path.getsize(STUB) + os.path.getsize(tarzst)
    row("packed size", f"{packed:,} B", f"{base:,} B (stub + .tar.zst)", "<= 1.01x", f"{packed/base:.4f}x")

    # 1. warm start vs the entry run directly
    assert run_measured([exe], env=env)[0] >= 0  # unpack once
    entry = os.path.join(cache, "bench", sorted(d for d in os.listdir(os.path.join(cache, "bench")) if os.path.isdir(os.path.join(cache, "bench", d)))[0], "bin", "app")
    warm_runs = 40 if QUICK else 200
    t = interleaved({"packed": lambda: run_measured([exe], env=env)[0], "direct": lambda: run_measured([entry], env=env)[0]}, warm_runs)
    added = (t["packed"] - t["direct"]) * 1e3
    row(f"warm start ({mb} MB app)", f"{t['packed']*1e3:.2f} ms", f"{t['direct']*1e3:.2f} ms (entry run directly)", "<= +2 ms", f"+{added:.2f} ms ({t['packed']/t['direct']:.2f}x)")

    # 2. cold start vs zstd -dc | tar -x
    payload = os.path.join(WORK, "payload.tar.zst")
    payload_of(exe, payload)
    out_dir = os.path.join(WORK, "untar")

    def prepare(name):
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.makedirs(out_dir)
        sh("sync")

    t = interleaved(
        {
            "cold": lambda: run_measured([exe], env=env)[0],
            "untar": lambda: run_measured(["sh", "-c", f"zstd -dc '{payload}' | tar -x -C '{out_dir}'"])[0],
        },
        runs,
        prepare,
    )
    row(f"cold start ({mb} MB app)", f"{t['cold']*1e3:.0f} ms", f"{t['untar']*1e3:.0f} ms (zstd -dc | tar -x)", "<= 1.00x", f"{t['cold']/t['untar']:.2f}x")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class QuietServer(socketserver.ThreadingTCPServer):
    def handle_error(self, request, client_address):
        # The updater hangs up on a whole file sent in answer to its
        # request for the file's end: expected, not worth a traceback.
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(root, work):
    """nginx serving `root` on a free loopback port, as a deployment would
    (sendfile, ETags, ranges). Returns (port, stop)."""
    port = free_port()
    os.makedirs(os.path.join(work, "logs"))
    os.makedirs(os.path.join(work, "tmp"))
    conf = os.path.join(work, "nginx.conf")
    temp = " ".join(f"{kind}_temp_path {work}/tmp;" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    with open(conf, "w") as f:
        f.write(f"daemon off; master_process off; pid {work}/nginx.pid; error_log {work}/logs/error.log;\n"
                f"events {{ worker_connections 64; }}\n"
                f"http {{ access_log off; sendfile on; {temp}\n"
                f"  server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n")
    proc = subprocess.Popen([NGINX, "-c", conf, "-p", work], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise SystemExit("nginx did not start")

    def stop():
        proc.terminate()
        proc.wait()
    return port, stop


def start_python_server(root):
    """Python's http.server on a free loopback port: no ranges, so the
    updater checks the payload after the download. Returns (port, stop)."""
    handler = lambda *a, **k: QuietHandler(*a, directory=root, **k)
    server = QuietServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1], server.shutdown


def bench_update():
    size_mb = 40 if QUICK else 200
    app = os.path.join(WORK, "bigapp")
    os.makedirs(os.path.join(app, "bin"))
    shutil.copy("/bin/true", os.path.join(app, "bin", "app"))
    with open(os.path.join(app, "data.bin"), "wb") as f:
        f.write(random.Random(1).randbytes(size_mb << 20))
    rss = []
    for kind in ("nginx", "python"):
        site = os.path.join(WORK, f"site-{kind}")
        os.makedirs(site)
        if kind == "nginx":
            port, stop = start_nginx(site, os.path.join(WORK, "nginx"))
        else:
            port, stop = start_python_server(site)
        try:
            t, size = time_update(app, site, port, rss, durable_baseline=kind == "nginx")
        finally:
            stop()
        if kind == "nginx":
            row(f"update download+verify+install ({size:.0f} MB, nginx)", f"{size/t['ours']:.0f} MB/s", f"{size/t['curl']:.0f} MB/s (curl -o)", ">= 0.80x", f"{t['curl']/t['ours']:.2f}x")
            row("  same, against a durable download", f"{size/t['ours']:.0f} MB/s", f"{size/t['curl_sync']:.0f} MB/s (curl -o, then fsync)", "(for context)", f"{t['curl_sync']/t['ours']:.2f}x")
            row("  same, curl -o over the old build", f"{size/t['ours']:.0f} MB/s", f"{size/t['curl_replacing']:.0f} MB/s (curl -o replacing it)", "(for context)", f"{t['curl_replacing']/t['ours']:.2f}x")
        else:
            row("  same, from Python's http.server (no ranges)", f"{size/t['ours']:.0f} MB/s", f"{size/t['curl']:.0f} MB/s (curl -o)", "(for context)", f"{t['curl']/t['ours']:.2f}x")
    row("update peak RSS", f"{max(rss)/1024:.1f} MiB", "-", "< 64 MiB", f"{max(rss)/1024:.1f} MiB")


def time_update(app, site, port, rss, durable_baseline):
    """Packs 1.0 and 1.1 of `app` for the server on `port` serving `site`,
    then times 1.0 updating itself against `curl -o` of 1.1 into a new file
    (and, when `durable_baseline`, followed by a sync of the file, and over
    a copy of 1.0). Returns medians and the size of 1.1 in MB."""
    spec = f"http://127.0.0.1:{port}/{{VERSION}}/update.toml"
    for version in ("1.0", "1.1"):
        with open(os.path.join(app, "version.txt"), "w") as f:
            f.write(version)
        sh(f"'{TOOLS}' pack '{app}' --entry bin/app --name big --version {version} --level 1 --update-url-spec '{spec}' "
           f"--update-exit-wait 600 --auto-update-toml-file '{site}/{version}/update.toml' -o '{site}/{version}/big.bin' 2>/dev/null")
    shutil.copy(f"{site}/1.1/update.toml", f"{site}/1.0/update.toml")
    user = os.path.join(site, "user")
    os.makedirs(user)
    exe = os.path.join(user, "big.bin")
    env = dict(os.environ, ONEFILE_CACHE_DIR=os.path.join(site, "cache"))
    curl_out = os.path.join(site, "curl.bin")
    url = f"http://127.0.0.1:{port}/1.1/big.bin"

    def ours():
        shutil.copy(f"{site}/1.0/big.bin", exe)
        run_measured([exe], env=dict(env, AUTO_UPDATE_DISABLE="1"))  # unpack outside the timing
        sh("sync")
        secs, kib = run_measured([exe], env=env, rss=True)
        with open(exe, "rb") as f, open(f"{site}/1.1/big.bin", "rb") as g:
            if f.read(1 << 16) != g.read(1 << 16) or os.path.getsize(exe) != os.path.getsize(f"{site}/1.1/big.bin"):
                raise SystemExit("update did not install")
        rss.append(kib)
        return secs

    def curl():
        if os.path.exists(curl_out):
            os.remove(curl_out)
        sh("sync")
        return run_measured(["curl", "-sf", "-o", curl_out, url])[0]

    def curl_durable():
        if os.path.exists(curl_out):
            os.remove(curl_out)
        sh("sync")
        return run_measured(["sh", "-c", f"curl -sf -o '{curl_out}' '{url}' && sync '{curl_out}'"])[0]

    def curl_replacing():
        # The same start as ours: the old build on disk (and in the page
        # cache), replaced by the download, whose writing frees it.
        shutil.copy(f"{site}/1.0/big.bin", curl_out)
        sh("sync")
        return run_measured(["curl", "-sf", "-o", curl_out, url])[0]

    cases = {"ours": ours, "curl": curl}
    if durable_baseline:
        cases["curl_sync"] = curl_durable
        cases["curl_replacing"] = curl_replacing
    runs = 3 if QUICK else 9
    return interleaved(cases, runs), os.path.getsize(f"{site}/1.1/big.bin") / 1e6


def bench_big_cold():
    size_mb = 128 if QUICK else 1024
    app = os.path.join(WORK, "gigapp")
    os.makedirs(os.path.join(app, "bin"))
    shutil.copy("/bin/true", os.path.join(app, "bin", "app"))
    rng = random.Random(3)
    chunk = rng.randbytes(1 << 20)
    for i in range(size_mb // 64):
        with open(os.path.join(app, f"part{i:02}.bin"), "wb") as f:
            for j in range(64):
                f.write(chunk[j:] + chunk[:j])
    exe = os.path.join(WORK, "gig.bin")
    sh(f"'{TOOLS}' pack '{app}' --entry bin/app --name gig --level 1 -o '{exe}' 2>/dev/null")
    env = dict(os.environ, ONEFILE_CACHE_DIR=os.path.join(WORK, "cache-gig"))
    secs, kib = run_measured([exe], env=env, rss=True)
    row(f"cold start peak RSS ({size_mb} MiB payload)", f"{kib/1024:.1f} MiB", f"{secs:.1f} s to unpack", "< 64 MiB", f"{kib/1024:.1f} MiB")
    stub = os.path.getsize(STUB)
    row("stub size (stripped)", f"{stub:,} B", "2,097,152 B", "<= 2 MiB", f"{stub/2097152:.3f} of the budget")


def main():
    for tool in (TOOLS, STUB):
        if not os.path.exists(tool):
            raise SystemExit(f"{tool} is missing: run `make build` first")
    for cmd in ("zstd", "tar", "curl", "/usr/bin/time", NGINX):
        if not shutil.which(cmd):
            raise SystemExit(f"{cmd} is missing: run `make deps`")
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    print(f"onefile benchmarks ({'quick' if QUICK else 'full'}), {os.cpu_count()} cores", flush=True)
    started = time.time()
    bench_tree()
    bench_packed_size()
    bench_update()
    bench_big_cold()
    print(f"\n| case | onefile | baseline | goal | result |\n|---|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")
    print(f"\n({time.time() - started:.0f} s)")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
