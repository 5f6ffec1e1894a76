"""``python -m kubekeep.agent``: the agent image's entry point (no CLI dependencies)."""

from __future__ import annotations

import argparse
import sys

from kubekeep import errors
from kubekeep.agent import protocol as p
from kubekeep.agent.server import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubekeep-agent", description=run.__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--root", help="directory to serve (the mounted volume)")
    source.add_argument("--device", help="block device to serve (a raw block volume)")
    parser.add_argument("--listen", default=":8765", help="HOST:PORT to listen on (default :8765)")
    parser.add_argument("--write", action="store_true", help="also accept restore sessions")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=600.0,
        help="exit if no session started within this many seconds (default 600)",
    )
    parser.add_argument(
        "--handshake-timeout",
        type=float,
        default=p.HANDSHAKE_TIMEOUT,
        help=f"seconds a connection has to authenticate (default {p.HANDSHAKE_TIMEOUT:.0f})",
    )
    args = parser.parse_args(argv)
    try:
        return run(
            args.root or args.device,
            block=bool(args.device),
            write=args.write,
            listen=args.listen,
            idle_timeout=args.idle_timeout,
            handshake_timeout=args.handshake_timeout,
        )
    except errors.KubekeepError as exc:
        print(f"kubekeep-agent: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
