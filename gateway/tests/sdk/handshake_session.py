"""The official MCP SDK's handshake-era client (mode="legacy": initialize, then a session) through a gateway URL.

usage: handshake_session.py URL KEY PHASES

Opens one session with the gateway key KEY, then runs PHASES phases on it; before every phase but the first it
waits for a line `continue` on standard input (the test restarts replicas or rotates the secret meanwhile).
Each phase lists the tools four times and calls `add`. Prints, one per line:

    VERSION <negotiated protocol version>
    SESSION <the session id the client was given>
    PHASE <n> <tool names as JSON> <the text of add's result as JSON>
    DONE                                  (after the client closed the session: the SDK sends DELETE)

Any failure ends the script with a traceback and a non-zero status.
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url: str, key: str, phases: int) -> None:
    given: list[str] = []

    async def remember_session(response) -> None:
        session = response.headers.get("mcp-session-id")
        if session and not given:
            given.append(session)

    http = create_mcp_http_client(headers={"x-litellm-api-key": key})
    hooks = dict(http.event_hooks)
    hooks["response"] = [*hooks.get("response", []), remember_session]
    http.event_hooks = hooks
    async with http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode="legacy") as client:
            print("VERSION", client.protocol_version, flush=True)
            print("SESSION", given[0], flush=True)
            for phase in range(phases):
                if phase:
                    line = await asyncio.to_thread(sys.stdin.readline)
                    if line.strip() != "continue":
                        raise SystemExit(f"expected 'continue', got {line!r}")
                for _ in range(4):
                    tools = await client.list_tools()
                result = await client.call_tool("add", {"a": 2, "b": 3})
                texts = [getattr(content, "text", None) for content in result.content]
                names = sorted(tool.name for tool in tools.tools)
                print("PHASE", phase, json.dumps(names), json.dumps(texts), flush=True)
    print("DONE", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
