#!/usr/bin/env python3
"""SOC Warden's reference agent: an MCP client on the official Python SDK (PyPI `mcp` 2.x) that
lists its tools at the SOC Warden gateway and calls one, with the token SOC Warden issued to it.

    agent.py --url https://<operator>/mcp --token-file /var/run/secrets/socwarden/token --ca-file ca.crt list
    agent.py ... call isolate-pod '{"parameters": {"app": "web"}, "target": {"kind": "Pod", "name": "web-1", "namespace": "web"}}'

A call of a tool that needs human approval returns while it waits: clients of MCP 2026-07-28
get an input-required result carrying a signed request state and retry with it (the SDK does so
up to --max-rounds times; --once prints the state instead, and --request-state resumes from it);
older clients (--mode legacy) get a "pending approval" text naming the request, to poll with the
warden_request tool.

stdout: JSON.  Exit codes: 0 ok, 2 HTTP 401, 3 HTTP 403, 1 anything else
(status and server message on stderr).

Note for mcp 2.x: the Streamable HTTP transport turns an HTTP 4xx that has no
JSON-RPC error body into a generic MCPError(-32603, "Server returned an error
response") and drops the status code, so this script records 4xx/5xx responses
with an httpx2 response event hook and maps them to exit codes itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

EXIT_OK, EXIT_OTHER, EXIT_401, EXIT_403 = 0, 1, 2, 3


class HttpErrorRecorder:
    """httpx2 response hook that keeps every >=400 response's status and body text."""

    def __init__(self) -> None:
        self.errors: list[tuple[int, str, str, str]] = []  # (status, method, url, body)

    async def __call__(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            try:
                body = (await response.aread()).decode("utf-8", "replace")
            except Exception as exc:  # noqa: BLE001 - body is best effort
                body = f"<unreadable body: {exc}>"
            self.errors.append((response.status_code, response.request.method, str(response.request.url), body))

    def pick(self) -> tuple[int, str, str, str] | None:
        for wanted in (401, 403):
            for err in self.errors:
                if err[0] == wanted:
                    return err
        # GET (server-push stream) and DELETE (session end) failures are not fatal on their own.
        posts = [e for e in self.errors if e[1] == "POST"]
        return posts[-1] if posts else None


def body_message(body: str) -> str:
    """Pull a human message out of a JSON (OAuth-style or JSON-RPC) error body, else return it trimmed."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:500]
    if isinstance(data, dict):
        if isinstance(data.get("error"), dict):  # JSON-RPC error object
            return str(data["error"].get("message", data["error"]))
        for key in ("error_description", "message", "detail", "error"):
            if key in data:
                return str(data[key])
    return body.strip()[:500]


def leaves(exc: BaseException) -> list[BaseException]:
    """Flatten (nested) exception groups raised out of anyio task groups."""
    subs = getattr(exc, "exceptions", None)
    if subs:
        out: list[BaseException] = []
        for sub in subs:
            out.extend(leaves(sub))
        return out
    return [exc]


def dump(model: Any) -> Any:
    return None if model is None else model.model_dump(by_alias=True, mode="json", exclude_none=True)


def result_json(result: Any) -> Any:
    if getattr(result, "result_type", None) == "input_required":
        return {"inputRequired": True, "requestState": result.request_state}
    return {
        "isError": bool(result.is_error),
        "structuredContent": result.structured_content,
        "text": [c.text for c in result.content if getattr(c, "type", None) == "text"],
    }


async def run(args: argparse.Namespace, recorder: HttpErrorRecorder) -> Any:
    with open(args.token_file, encoding="utf-8") as fh:
        token = fh.read().strip()
    verify: ssl.SSLContext | bool = True
    if args.ca_file:
        verify = ssl.create_default_context(cafile=args.ca_file)

    headers = {"Authorization": f"Bearer {token}"}
    if args.traceparent:
        headers["traceparent"] = args.traceparent
    http_client = httpx2.AsyncClient(
        headers=headers,
        verify=verify,
        timeout=httpx2.Timeout(30.0, read=args.timeout),
        event_hooks={"response": [recorder]},
    )
    async with http_client:
        transport = streamable_http_client(args.url, http_client=http_client)
        async with Client(
            transport, mode=args.mode, read_timeout_seconds=args.timeout, input_required_max_rounds=getattr(args, "max_rounds", 10)
        ) as client:
            # In mode="auto" a legacy server may reject the server/discover probe with a 4xx before
            # the initialize fallback succeeds; forget those so they cannot be blamed for later errors.
            recorder.errors.clear()
            if args.command == "list":
                tools, cursor = [], None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
                return {
                    "protocolVersion": client.protocol_version,
                    "tools": [
                        {
                            "name": t.name,
                            "description": t.description,
                            "inputSchema": t.input_schema,
                            "annotations": dump(t.annotations),
                        }
                        for t in tools
                    ],
                }
            if args.once:
                result = await client.session.call_tool(
                    args.tool, args.arguments, request_state=args.request_state, allow_input_required=True
                )
            else:
                result = await client.call_tool(args.tool, args.arguments, request_state=args.request_state)
            out = result_json(result)
            out["protocolVersion"] = client.protocol_version
            return out


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors exit 1, keeping 2 reserved for HTTP 401
        self.print_usage(sys.stderr)
        self.exit(EXIT_OTHER, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    p = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="MCP endpoint, e.g. https://host/mcp")
    p.add_argument("--token-file", required=True, help="file holding the bearer token")
    p.add_argument("--ca-file", help="PEM CA bundle to verify the server certificate (default: system trust)")
    p.add_argument("--timeout", type=float, default=60.0, help="read timeout in seconds (default 60)")
    p.add_argument(
        "--mode",
        default="auto",
        help="'auto' (server/discover probe, falls back to initialize; default), 'legacy' "
        "(initialize handshake only) or a modern version such as 2026-07-28",
    )
    p.add_argument("--traceparent", help="W3C traceparent to send (recorded on the request and in the decision log)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list tools")
    c = sub.add_parser("call", help="call a tool")
    c.add_argument("tool")
    c.add_argument("arguments", nargs="?", default="{}", help="JSON object of tool arguments")
    c.add_argument("--once", action="store_true", help="print an input-required answer instead of retrying")
    c.add_argument("--request-state", help="resume a call from the requestState of an input-required answer")
    c.add_argument("--max-rounds", type=int, default=10, help="retries while a request waits (default 10)")
    args = p.parse_args(argv)

    if args.command == "call":
        try:
            args.arguments = json.loads(args.arguments)
        except ValueError as exc:
            p.error(f"JSONARGS is not valid JSON: {exc}")
        if not isinstance(args.arguments, dict):
            p.error("JSONARGS must be a JSON object")

    recorder = HttpErrorRecorder()
    try:
        output = asyncio.run(run(args, recorder))
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # noqa: BLE001 - classify everything, including exception groups
        http_err = recorder.pick()
        if http_err is not None:
            status, method, url, body = http_err
            print(f"HTTP {status} on {method} {url}: {body_message(body)}", file=sys.stderr)
            if status in (401, 403):
                return EXIT_401 if status == 401 else EXIT_403
        for leaf in leaves(exc):
            if isinstance(leaf, MCPError):
                print(f"MCP error {leaf.code}: {leaf.message}", file=sys.stderr)
            elif isinstance(leaf, OSError) and not isinstance(leaf, ssl.SSLError):
                print(f"{type(leaf).__name__}: {leaf}", file=sys.stderr)  # e.g. unreadable token/CA file
            else:
                print(f"{type(leaf).__module__}.{type(leaf).__name__}: {leaf}", file=sys.stderr)
        return EXIT_OTHER

    json.dump(output, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
