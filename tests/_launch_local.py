"""Test-only launcher: ``python tests/_launch_local.py N ARGS...`` runs ``mjxmeta ARGS`` as N processes on localhost.

What ``srun``/``mpirun`` do on a cluster, for this machine: picks a free TCP
port, starts ``python -m mjxmeta.cli ARGS --coordinator localhost:PORT
--num-processes N --process-id i`` for i = 0..N-1 (CPU backend,
``PYTHONUNBUFFERED``), and waits for all of them. Each process's stdout and
stderr are collected and printed after it ends, framed by ``=== process i
stdout|stderr ===`` lines, then ``EXIT i <code>`` per process. When one
process fails, the others would wait forever in their next collective: they
get ``GRACE`` seconds (default 60, env ``LAUNCH_GRACE``) to end, then are
killed (their own PIDs). The launcher exits with the largest exit code.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def main(n: int, args: list[str]) -> int:
    port = free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    grace = float(os.environ.get("LAUNCH_GRACE", "60"))
    with tempfile.TemporaryDirectory() as tmp:
        procs, files = [], []
        for i in range(n):
            out, err = open(f"{tmp}/{i}.out", "w+"), open(f"{tmp}/{i}.err", "w+")
            files.append((out, err))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "mjxmeta.cli", *args, "--coordinator", f"localhost:{port}",
                 "--num-processes", str(n), "--process-id", str(i)], env=env, stdout=out, stderr=err))
        first_failure = None
        while any(p.poll() is None for p in procs):
            if first_failure is None and any(p.poll() not in (None, 0) for p in procs):
                first_failure = time.monotonic()
            if first_failure is not None and time.monotonic() - first_failure > grace:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            time.sleep(0.1)
        for i, (out, err) in enumerate(files):
            for name, f in (("stdout", out), ("stderr", err)):
                f.seek(0)
                print(f"=== process {i} {name} ===\n{f.read()}", end="", flush=True)
                f.close()
        for i, p in enumerate(procs):
            print(f"EXIT {i} {p.returncode}", flush=True)
    return max(abs(p.returncode) for p in procs)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2:]))
