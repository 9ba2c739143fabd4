"""`wildscreen`: the command-line client for platforms and reviewers.

    wildscreen screen photo.jpg listings/ --overlays review/   one JSON line per image
    wildscreen screen listings/ --summary --queue http://127.0.0.1:8080
                                        a line per image for people; REVIEW/FLAG go to the review queue
    wildscreen info                                            the model, thresholds, device
    wildscreen reload [--version v3]                           admin: swap in another model

API keys are made on the server's side: `wildscreen-serve keys add NAME`.
"""

from __future__ import annotations

import argparse
import json
import os
import queue as queue_module
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc

from wildscreen.client import LOAD_BALANCING_POLICIES, Connection
from wildscreen.inputs import find_images, request_id_of
from wildscreen.queue import NEEDS_A_PERSON, ReviewQueue, as_dict, result_line, summary_line
from wildscreen.v1 import screening_pb2 as pb
from wildscreen.v1 import screening_pb2_grpc as pb_grpc

_OVERLAY = {"jpeg": pb.OVERLAY_FORMAT_JPEG, "png": pb.OVERLAY_FORMAT_PNG}


def _connection(args: argparse.Namespace) -> Connection:
    return Connection(
        target=args.server,
        tls_ca=args.tls_ca,
        client_cert=args.tls_cert,
        client_key=args.tls_key,
        api_key=args.api_key,
        server_name=args.tls_server_name,
        retries=True,
        load_balancing=args.lb,
    )


class Tally:
    """What a run did, for the closing line of --summary and the exit code."""

    def __init__(self) -> None:
        self.verdicts: dict[str, int] = {}
        self.errors = 0

    def add(self, line: dict) -> None:
        if "error" in line:
            self.errors += 1
        else:
            verdict = str(line.get("verdict", "")).removeprefix("VERDICT_")
            self.verdicts[verdict] = self.verdicts.get(verdict, 0) + 1

    def closing_line(self, skipped: int) -> str:
        counts = ", ".join(f"{self.verdicts[v]} {v}" for v in ("FLAG", "REVIEW", "CLEAR") if v in self.verdicts)
        screened = sum(self.verdicts.values())
        return (f"{screened + self.errors} images: {counts or 'none screened'}; {self.errors} errors; "
                f"{skipped} files skipped (not images by their suffix)")


def rpc_error(exc: grpc.RpcError, server: str) -> str:
    text = f"wildscreen: {exc.code().name}: {exc.details()}"
    if exc.code() == grpc.StatusCode.UNAVAILABLE:
        text += f"\n  is a server listening at {server}? `make serve` starts one; --server (or WILDSCREEN_SERVER) names another"
    return text


def cmd_screen(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    inputs = find_images(args.paths)
    if inputs.skipped:
        print(f"wildscreen: skipped {len(inputs.skipped)} files that are not images by their suffix "
              f"(e.g. {inputs.skipped[0]})", file=sys.stderr)
    if not inputs.files:
        print("wildscreen: no image files found", file=sys.stderr)
        return 2
    overlay = _OVERLAY[args.overlay_format] if args.overlays else pb.OVERLAY_FORMAT_NONE
    overlay_suffix = "jpg" if args.overlay_format == "jpeg" else "png"
    queue = ReviewQueue(args.queue, args.queue_key) if args.queue else None
    tally = Tally()
    sent: dict[str, Path] = {}
    unreadable: queue_module.SimpleQueue[dict] = queue_module.SimpleQueue()

    def emit(line: dict) -> None:
        tally.add(line)
        print(summary_line(line) if args.summary else json.dumps(line), flush=True)
        bar.update(1)

    def requests() -> Iterator[pb.ScreenRequest]:
        for path in inputs.files:
            try:
                data = path.read_bytes()
            except OSError as exc:  # a local problem: no request, a line of its own
                unreadable.put({"path": str(path), "error": {"message": f"cannot read the file: {exc.strerror or exc}",
                                                             "local": True}})
                continue
            request_id = request_id_of(path, data)
            sent[request_id] = path
            yield pb.ScreenRequest(
                request_id=request_id, image=data, min_confidence=args.min_confidence, classes=args.classes or [],
                overlay=overlay, max_detections=args.max_detections, overlay_weaker=args.overlay_weaker,
            )

    def drain_unreadable() -> None:
        while not unreadable.empty():
            emit(unreadable.get())

    connection = _connection(args)
    bar = tqdm(total=len(inputs.files), unit="img", disable=len(inputs.files) < 2 or not sys.stderr.isatty(), file=sys.stderr)
    with connection.channel() as channel:
        stub = pb_grpc.ScreeningStub(channel)
        responses = stub.ScreenStream(requests(), metadata=connection.metadata(), timeout=args.timeout)
        try:
            for response in responses:
                drain_unreadable()
                path = sent[response.request_id]
                if response.HasField("error"):
                    emit({"path": str(path), "request_id": response.request_id, "error": as_dict(response.error)})
                    continue
                line = {"path": str(path)} | result_line(response)
                if response.overlay:
                    target = inputs.overlay_path(args.overlays, path, overlay_suffix)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(response.overlay)
                    line["overlay_path"] = str(target)
                if queue and line["verdict"] in NEEDS_A_PERSON:
                    try:  # the request id (the path) is the item's: the same file queued twice is one item
                        line["queued"] = queue.submit(path, line, path.parent.name)
                    except RuntimeError as exc:
                        tally.errors += 1
                        print(f"wildscreen: {exc}", file=sys.stderr)
                emit(line)
            drain_unreadable()
        except grpc.RpcError as exc:
            print(rpc_error(exc, args.server), file=sys.stderr)
            return 1
        finally:
            bar.close()
            if queue:
                queue.close()
    if args.summary:
        print(tally.closing_line(len(inputs.skipped)), flush=True)
    return 1 if tally.errors else 0


def _unary(args: argparse.Namespace, rpc: str, request) -> int:
    """Call one unary RPC and print its answer as JSON."""
    connection = _connection(args)
    with connection.channel() as channel:
        try:
            answer = getattr(pb_grpc.ScreeningStub(channel), rpc)(request, metadata=connection.metadata(), timeout=args.timeout)
        except grpc.RpcError as exc:
            print(rpc_error(exc, args.server), file=sys.stderr)
            return 1
    print(json.dumps(as_dict(answer), indent=2))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    return _unary(args, "GetModelInfo", pb.GetModelInfoRequest())


def cmd_reload(args: argparse.Namespace) -> int:
    return _unary(args, "ReloadModel", pb.ReloadModelRequest(version=args.version or ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wildscreen", description="Screen listing images with a wildscreen server.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_connection(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--server", default=os.environ.get("WILDSCREEN_SERVER", "127.0.0.1:50051"),
                       help="host:port, dns:///host:port or ipv4:a:port,b:port (or WILDSCREEN_SERVER)")
        p.add_argument("--lb", choices=LOAD_BALANCING_POLICIES, default=os.environ.get("WILDSCREEN_LB", "pick_first"),
                       help="round_robin: spread calls over every address the server name resolves to (or WILDSCREEN_LB)")
        p.add_argument("--api-key", default=os.environ.get("WILDSCREEN_API_KEY"), help="or WILDSCREEN_API_KEY")
        p.add_argument("--tls-ca", type=Path, help="CA certificate (PEM) that signed the server's; turns TLS on")
        p.add_argument("--tls-cert", type=Path, help="client certificate (PEM) for mutual TLS")
        p.add_argument("--tls-key", type=Path, help="client key (PEM) for mutual TLS")
        p.add_argument("--tls-server-name", help="host name to check the server certificate against")
        p.add_argument("--timeout", type=float, default=None, help="seconds for the whole call")
        return p

    screen = with_connection(sub.add_parser("screen", help="screen image files or folders; one JSON line per image"))
    screen.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="image files, and folders whose images (by suffix, recursively) are screened")
    screen.add_argument("--overlays", type=Path, metavar="FOLDER",
                        help="write reviewer overlays here, mirroring the input folders' tree")
    screen.add_argument("--overlay-format", choices=sorted(_OVERLAY), default="jpeg")
    screen.add_argument("--overlay-weaker", action="store_true",
                        help="overlays also show, faded, boxes below their class's review threshold")
    screen.add_argument("--min-confidence", type=float, default=0.0, help="0 = the model's default")
    screen.add_argument("--classes", nargs="*", help="only these labels, e.g. ivory live_reptile")
    screen.add_argument("--max-detections", type=int, default=0)
    screen.add_argument("--summary", action="store_true", help="one short line per image for people, not JSON")
    screen.add_argument("--queue", metavar="URL", default=os.environ.get("WILDSCREEN_REVIEW_URL"),
                        help="send REVIEW and FLAG results to this review service (wildscreen-review)")
    screen.add_argument("--queue-key", default=os.environ.get("WILDSCREEN_REVIEW_KEY"),
                        help="API key with the review role (or WILDSCREEN_REVIEW_KEY); none needed on loopback")
    screen.set_defaults(handler=cmd_screen)

    with_connection(sub.add_parser("info", help="print the served model's info")).set_defaults(handler=cmd_info)

    reload = with_connection(sub.add_parser("reload", help="admin: load the current (or a named) model version"))
    reload.add_argument("--version", help="a version in the server's weights/; default: the current one")
    reload.set_defaults(handler=cmd_reload)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
