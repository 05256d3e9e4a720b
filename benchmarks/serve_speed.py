"""Serving speed: `trilla serve` against DEEPaaS itself (`deepaas-run` with trilla's plugin) on the same
runs, the same machine and the same 150 px JPEG uploads, plus the in-process ceiling.

Two runs are served: the guitar/bass study's T6 (examples/guitar_bass.yaml, 150 px) and the default
small CNN, each trained for one epoch on generated pictures (speed does not depend on what they show).
For each, a loopback load generator (wrk: a fixed number of connections for a bounded time)
posts to `POST /v2/models/<name>/predict/` of:
- trilla serve with dynamic batching (its defaults: --max-batch 32, --max-wait-ms 1),
- trilla serve with --max-batch 1 (no batching),
- trilla serve with --gil-switch-ms 5 (Python's own switch interval instead of trilla serve's 1 ms),
- trilla serve with --workers N for each N of --workers (2 by default: two processes, each batching on its
  share of the cores, so the HTTP work of one no longer waits for the other's inference on the same
  interpreter lock),
- with --threads N: trilla serve --threads N, batched and with --max-batch 1 (torch's inference threads),
- deepaas-run (DEEPaaS 2.6 from `make deepaas`, one worker process, its default).
The ceiling is the same work without HTTP: JPEG decode + the run's preprocessing on a pool of decoding
threads as wide as trilla serve's, then forward, in process, at the best of several batch sizes. The load
generator (wrk, `apt-get install wrk`; a Lua script cycles the uploads) shares the machine's cores with the
servers; it is the same for every server.

    make bench-serve    # installs wrk and DEEPaaS's virtualenv where missing, then runs this with its defaults
    .venv/bin/python benchmarks/serve_speed.py [--seconds 8] [--pictures 64] [--workers 2 4] [--threads 2] [--wrk-threads 1]

Writes the tables of benchmarks/results/serve_speed.md; its "## Reading" section is written by hand and kept.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

import trilla
from trilla.predict import single_windows
from trilla.serve.app import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEEPAAS = ROOT / ".venv-deepaas" / "bin" / "deepaas-run"
READING = "## Reading"  # the results file's hand-written part, kept when the tables are measured again


def pictures(folder: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(count):
        label = "guitar" if i % 2 else "bass"
        (folder / label).mkdir(parents=True, exist_ok=True)
        smooth = rng.integers(0, 256, (15, 15, 3), dtype=np.uint8)
        Image.fromarray(smooth).resize((150, 150), Image.BILINEAR).save(folder / label / f"{i:04d}.jpg", quality=90)
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], ready: str, env: dict | None = None) -> subprocess.Popen:
    """Start a server and wait until `ready` answers 200; one that exits first fails at once, with its last words."""
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(ready, timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    log.seek(0)
    said = log.read().decode(errors="replace")[-2000:]
    raise RuntimeError(f"{' '.join(command)} did not start (exit status {process.wait()}):\n{said}")


WRK_SCRIPT = """
local bodies, i = {}, 0
local folder = os.getenv("BODIES")
for n = 1, tonumber(os.getenv("COUNT")) do
  local f = io.open(folder .. "/" .. n .. ".bin", "rb"); bodies[n] = f:read("*all"); f:close()
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=trillabench"
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %f %f\\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def multipart(body: bytes) -> bytes:
    return (b'--trillabench\r\nContent-Disposition: form-data; name="data"; filename="x.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            + body + b"\r\n--trillabench--\r\n")


def load(url: str, folder: Path, count: int, seconds: int, concurrency: int, threads: int) -> dict:
    """req/s, p50 and p99 latency (ms) from wrk: `concurrency` connections posting the uploads for `seconds`
    (after a 2-second warm-up)."""
    env = {**os.environ, "BODIES": str(folder), "COUNT": str(count)}
    script = folder / "post.lua"
    for duration in (2, seconds):
        done = subprocess.run(["wrk", "-t", str(min(threads, concurrency)), "-c", str(concurrency), "-d", f"{duration}s", "--timeout", "30s", "-s", str(script), url],
                              capture_output=True, text=True, env=env, check=True)
    requests, micros, errors, p50, p99 = done.stdout.split("RESULT ")[1].split()
    return {"rps": int(requests) / (int(micros) / 1e6), "p50": float(p50), "p99": float(p99), "failures": int(errors), "requests": int(requests)}


def ceiling(run, bodies: list[bytes], rounds: int = 3) -> tuple[float, int]:
    """Pictures per second of decode + preprocessing + forward in process, at the best batch size. Decoding
    runs on as many threads as trilla serve's pool by default (PIL and the resizing release the interpreter lock), so
    that on many cores the ceiling is not one decoding thread's speed."""
    predictor = run.predictor()
    best = (0.0, 1)
    with ThreadPoolExecutor(Settings().decode_threads) as pool:
        for batch in (1, 8, 32, 64):
            rates = []
            for _ in range(rounds):
                began = time.perf_counter()
                for start in range(0, len(bodies), batch):
                    prepared = pool.map(predictor.prepare, bodies[start : start + batch])
                    predictor.forward([w for item in prepared for w in single_windows(item)[0]], None, batch_size=batch)
                rates.append(len(bodies) / (time.perf_counter() - began))
            best = max(best, (float(np.median(rates)), batch))
    return best


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=positive, default=8, help="length of each measurement, in whole seconds (as wrk takes it)")
    parser.add_argument("--pictures", type=positive, default=64, help="distinct JPEG uploads, cycled")
    parser.add_argument("--workers", type=positive, nargs="+", default=[2], help="also measure trilla serve --workers N for each N")
    parser.add_argument("--threads", type=positive, nargs="*", default=[],
                        help="also measure trilla serve --threads N, batched and with --max-batch 1, for each N (torch's inference threads)")
    parser.add_argument("--wrk-threads", type=positive, default=1, help="the load generator's threads (at most one per connection)")
    parser.add_argument("--deepaas", type=Path, default=DEEPAAS, help="the deepaas-run to start (with trilla's plugin installed)")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_speed.md", help="the results file; its Reading is kept")
    args = parser.parse_args()
    if not args.deepaas.exists():
        parser.error(f"{args.deepaas} is missing: make bench-serve builds it (or make deepaas)")
    if shutil.which("wrk") is None:
        parser.error("the load generator is wrk: make bench-serve installs it (or apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="trilla-serve-speed-"))
    data = pictures(work / "guitar_bass", 120)
    bodies = [p.read_bytes() for p in sorted(data.glob("*/*.jpg"))[: args.pictures]]
    uploads = work / "uploads"
    uploads.mkdir()
    for n, body in enumerate(bodies, 1):
        (uploads / f"{n}.bin").write_bytes(multipart(body))
    (uploads / "post.lua").write_text(WRK_SCRIPT)
    cases = {
        "T6 (150 px)": trilla.load_config(ROOT / "examples" / "guitar_bass.yaml", ["train.epochs=1", "train.progress=false", f"run.dir={work / 'runs'}"], data),
        "default small CNN": trilla.load_config(None, ["train.epochs=1", "train.progress=false", f"run.dir={work / 'runs'}"], data),
    }
    rows = []
    for label, config in cases.items():
        run = trilla.train(config)
        rate, batch = ceiling(run, bodies)
        measured = {}
        trilla_serve = [sys.executable, "-m", "trilla", "serve", str(run.path), "--name", "trilla", "-q"]
        servers = {
            "trilla serve": trilla_serve,
            "trilla serve --max-batch 1": [*trilla_serve, "--max-batch", "1"],
            "trilla serve --gil-switch-ms 5": [*trilla_serve, "--gil-switch-ms", "5"],
            **{f"trilla serve --workers {n}": [*trilla_serve, "--workers", str(n)] for n in args.workers},
            **{f"trilla serve --threads {n}{batch}": [*trilla_serve, "--threads", str(n), *batch.split()]
               for n in args.threads for batch in ("", " --max-batch 1")},
            "deepaas-run": [str(args.deepaas), "--listen-ip", "127.0.0.1"],
        }
        for server, command in servers.items():
            port = free_port()
            command = [*command, "--listen-port" if server == "deepaas-run" else "--port", str(port)]
            base = f"http://127.0.0.1:{port}"
            process = start(command, f"{base}/v2/models/", {"TRILLA_RUN": str(run.path)})
            try:
                for concurrency in (8, 32):
                    if server.endswith(("--max-batch 1", "--gil-switch-ms 5")) and concurrency == 8:
                        continue
                    measured[server, concurrency] = result = load(f"{base}/v2/models/trilla/predict/", uploads, len(bodies), args.seconds, concurrency, args.wrk_threads)
                    print(label, server, concurrency, {k: round(v, 1) for k, v in result.items()}, flush=True)
            finally:
                process.terminate()
                process.wait(timeout=30)
        rows.append((label, rate, batch, measured))
    write(rows, args)


def write(rows, args) -> None:
    served = ["trilla serve", *(f"trilla serve --workers {n}" for n in args.workers)]
    lines = [
        "# Serving speed: trilla serve vs DEEPaaS (`benchmarks/serve_speed.py`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}; inference on the CPU; load generator wrk ({args.wrk_threads} thread(s), on the same "
        f"cores), {args.seconds:g} s per measurement after a 2-s warm-up, {args.pictures} distinct 150 px JPEG uploads cycled. "
        "DEEPaaS 2.6.0 runs the plugin (`trilla.serve.deepaas_plugin`) with its default single worker process.",
        "",
        "| model | server | concurrency | requests | req/s | p50 ms | p99 ms | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, _, _, measured in rows:
        for (server, concurrency), r in measured.items():
            lines.append(f"| {label} | {server} | {concurrency} | {r['requests']} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['failures']} |")
    names = "; ".join(["1 worker", *(f"{n} workers" for n in args.workers)])
    threads = ["", *(f" --threads {n}" for n in args.threads)]
    thread_names = "; ".join(["default threads", *(f"--threads {n}" for n in args.threads)])
    lines += ["", f"| model | ceiling (pictures/s, in process) | at batch | best trilla req/s / ceiling ({names}) | "
              f"trilla / DEEPaaS at c=8 ({names}) | batching / --max-batch 1 at c=32 ({thread_names}) | "
              f"trilla p99 ms at c=8 (goal < 60; {names}) | switch 1 ms / 5 ms at c=32 |",
              "|---|---|---|---|---|---|---|---|"]
    for label, rate, batch, m in rows:
        best = "; ".join(f"{max(m[s, 8]['rps'], m[s, 32]['rps']) / rate:.2f}" for s in served)
        against = "; ".join(f"{m[s, 8]['rps'] / m['deepaas-run', 8]['rps']:.1f}x" for s in served)
        tails = "; ".join(f"{m[s, 8]['p99']:.1f}" for s in served)
        batching = "; ".join(f"{m[f'trilla serve{v}', 32]['rps'] / m[f'trilla serve{v} --max-batch 1', 32]['rps']:.2f}x" for v in threads)
        switch = m["trilla serve", 32]["rps"] / m["trilla serve --gil-switch-ms 5", 32]["rps"]
        lines.append(f"| {label} | {rate:.0f} | {batch} | {best} | {against} | {batching} | {tails} | {switch:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    kept = args.out.read_text().partition(READING)[2] if args.out.exists() else ""  # the hand-written reading stays
    args.out.write_text("\n".join(lines) + "\n" + (f"\n{READING}{kept}" if kept else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
