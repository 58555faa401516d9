#!/usr/bin/env python3
"""Many open event streams through the gateway: memory per stream and CPU while idle.

    scripts/bench-streams.py            (env: STREAMS=10000 IDLE_SECONDS=10, GATEWAY_BIN for another build)

Starts the demo MCP upstream (rmcp, `bench_server mcp-upstream`) and the gateway (`mcp-gateway`, release builds) on
loopback, opens STREAMS MCP sessions through the gateway (initialize + notifications/initialized, passthrough
token), then one `GET` event stream per session, and keeps them all open. Reports the gateway's RSS growth per
open stream (from /proc/PID/status VmRSS, before the sessions and with every stream open), its CPU time
(utime + stime from /proc/PID/stat) over IDLE_SECONDS with every stream idle, and its open file descriptors.

Each stream holds two sockets in the gateway (the client's and the upstream's), so the gateway needs about
2 x STREAMS + 100 descriptors. The gateway does not raise its own limit: this script raises RLIMIT_NOFILE (the
hard limit too, given CAP_SYS_RESOURCE) and the servers it starts inherit it; a deployment does the same
(`ulimit -n`, systemd `LimitNOFILE=`). Where the hard limit cannot be raised, the streams are capped to fit.
"""

import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import time

STREAMS = int(os.environ.get("STREAMS", "10000"))
IDLE_SECONDS = float(os.environ.get("IDLE_SECONDS", "10"))
TOKEN = "bench-oauth-token"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "examples")
CLK_TCK = os.sysconf("SC_CLK_TCK")
INIT = json.dumps({
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "streams", "version": "0"}},
})
INITIALIZED = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})


def start(*args):
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    match = re.match(r"listening on http://(\S+)", line)
    if not match:
        sys.exit(f"server did not start: {args}")
    return proc, match.group(1)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


async def exchange(host, port, request):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


def post(path, host_port, body, session=None):
    headers = [
        f"POST {path} HTTP/1.1", f"Host: {host_port}", f"Authorization: Bearer {TOKEN}",
        "Content-Type: application/json", "Accept: application/json, text/event-stream",
        f"Content-Length: {len(body)}", "Connection: close",
    ]
    if session:
        headers += [f"Mcp-Session-Id: {session}", "Mcp-Protocol-Version: 2025-06-18"]
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


async def open_stream(host, port, limiter):
    host_port = f"{host}:{port}"
    async with limiter:
        reader, writer, head = await exchange(host, port, post("/mcp/demo", host_port, INIT))
        session = re.search(rb"(?i)\r\nmcp-session-id: *([^\r]+)", head)
        writer.close()
        if not head.startswith(b"HTTP/1.1 200") or not session:
            raise RuntimeError(f"initialize failed: {head[:80]!r}")
        session = session.group(1).decode()
        _, writer, head = await exchange(host, port, post("/mcp/demo", host_port, INITIALIZED, session))
        writer.close()
        get = "\r\n".join([
            "GET /mcp/demo HTTP/1.1", f"Host: {host_port}", f"Authorization: Bearer {TOKEN}",
            "Accept: text/event-stream", f"Mcp-Session-Id: {session}", "Mcp-Protocol-Version: 2025-06-18",
        ]) + "\r\n\r\n"
        reader, writer, head = await exchange(host, port, get.encode())
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"GET stream failed: {head[:80]!r}")
        return reader, writer


async def main():
    global STREAMS
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * STREAMS + 100
    try:
        # Raising the hard limit needs CAP_SYS_RESOURCE; without it, the streams are capped to what fits.
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, needed), max(hard, needed)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if hard < needed:
            fits = (hard - 100) // 2
            print(f"RLIMIT_NOFILE hard limit is {hard} and cannot be raised here: {fits} streams instead of "
                  f"{STREAMS} (each takes two descriptors in the gateway)", file=sys.stderr)
            STREAMS = fits
    subprocess.run(["cargo", "build", "--release", "-p", "mcp-gateway", "--example", "bench_server", "--bin", "mcp-gateway"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    upstream, upstream_addr = start(os.path.join(BIN, "bench_server"), "mcp-upstream")
    gateway_bin = os.environ.get("GATEWAY_BIN", os.path.join(ROOT, "target", "release", "mcp-gateway"))
    gateway, gateway_addr = start(gateway_bin, "--listen", "127.0.0.1:0", "--key", "sk-bench",
                                  "--upstream", f"demo=http://{upstream_addr}/mcp", "--passthrough", "demo")
    try:
        host, port = gateway_addr.rsplit(":", 1)
        await asyncio.sleep(0.5)
        rss_before, fds_before = rss_kib(gateway.pid), fds(gateway.pid)
        limiter = asyncio.Semaphore(64)
        began = time.monotonic()
        streams = await asyncio.gather(*(open_stream(host, int(port), limiter) for _ in range(STREAMS)))
        opened_in = time.monotonic() - began
        await asyncio.sleep(2)
        rss_open, fds_open = rss_kib(gateway.pid), fds(gateway.pid)
        cpu_before = cpu_seconds(gateway.pid)
        await asyncio.sleep(IDLE_SECONDS)
        idle_cpu = cpu_seconds(gateway.pid) - cpu_before
        still_open = sum(1 for reader, _ in streams if not reader.at_eof())
        per_stream = (rss_open - rss_before) / STREAMS
        print(f"| streams | opened in | RSS before | RSS open | KiB / stream | CPU over {IDLE_SECONDS:.0f} s idle "
              f"| fds before / open | still open |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| {STREAMS} | {opened_in:.1f} s | {rss_before} KiB | {rss_open} KiB | {per_stream:.1f} "
              f"| {idle_cpu * 1000:.0f} ms | {fds_before} / {fds_open} | {still_open} |")
        # The performance issue's target; hyper's own buffers on a stream's two connections are already 32 KiB.
        print(f"\ntarget <= 36 KiB per stream: {'met' if per_stream <= 36 else 'missed'}")
        for _, writer in streams:
            writer.close()
    finally:
        gateway.terminate()
        upstream.terminate()


asyncio.run(main())
