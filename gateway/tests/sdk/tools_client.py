"""Drives the official MCP Python SDK's client through the gateway: lists the tools, calls one that is refused
and one that is allowed, and prints what it saw as one JSON line.

    python tools_client.py URL KEY MODE REFUSED ALLOWED

MODE is the SDK's `mode=`: "legacy" (the initialize handshake) or "2026-07-28" (the stateless revision).
"""

import asyncio
import json
import sys

import httpx2
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, key: str, mode: str, refused: str, allowed: str) -> None:
    http = httpx2.AsyncClient(headers={"x-litellm-api-key": key}, timeout=10.0)
    seen: dict = {}
    async with Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as client:
        seen["version"] = client.protocol_version
        listed = await client.list_tools()
        seen["tools"] = sorted(tool.name for tool in listed.tools)
        try:
            result = await client.call_tool(refused, {"text": "x"})
            seen["refused"] = {"is_error": result.is_error, "content": result.model_dump(mode="json")["content"]}
        except Exception as error:  # a JSON-RPC error answer
            seen["refused"] = {"error": str(error)}
        result = await client.call_tool(allowed, {"text": "hi"})
        seen["allowed"] = {"is_error": result.is_error, "content": result.model_dump(mode="json")["content"]}
    print(json.dumps(seen))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
