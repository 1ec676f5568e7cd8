"""Command line: ``python -m asgi_bridge MODULE:APP --bus zmq://HOST:PORT [options]``
(or ``--bus redis://HOST:PORT/DB``); ``python -m asgi_bridge keygen DIR/NAME`` writes a
CURVE key pair for the ZeroMQ bus.

Every option can also be given as an ``ASGI_BRIDGE_<OPTION>`` environment variable
(e.g. ``ASGI_BRIDGE_BUS``, ``ASGI_BRIDGE_CONCURRENCY``); the command line wins.
"""

import argparse
import math
import os
import sys

from . import __version__
from .curve import CurveKeys, keygen
from .logformat import LOG_FORMATS
from .logformat import configure as configure_logging
from .redis_transport import RedisTls
from .shared_ring import DEFAULT_CAPACITY, check_capacity
from .transport import check_bus_urls, split_bus_urls

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _env(name, default):
    return os.environ.get(f"ASGI_BRIDGE_{name.upper().replace('-', '_')}", default)


def _env_flag(name):
    return _env(name, "").lower() in ("1", "true", "yes", "on")


def _positive(kind):
    def parse(text):
        value = kind(text)
        # `nan <= 0` is False: a number that is not finite is refused apart.
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
        return value
    return parse


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def _ring_capacity(text):
    try:
        return check_capacity(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m asgi_bridge",
        description="Run an ASGI application as an asgi-bridge worker.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("app", help="the application, as MODULE:ATTRIBUTE")
    p.add_argument("--bus", action="append", default=None,
                   help="bus URL: zmq://HOST:PORT or zmq+ipc://PATH of a gateway (repeat or "
                        "separate with commas for several gateways), or "
                        "redis://[user:password@]HOST:PORT/DB (rediss:// for TLS) shared by "
                        "every gateway")
    p.add_argument("--bus-prefix", default=_env("bus-prefix", "asgi"),
                   help="Redis bus: prefix of every key (default asgi; the gateways' "
                        "--bus-prefix)")
    p.add_argument("--bus-server-key", default=_env("bus-server-key", None),
                   help="ZeroMQ CURVE: the gateway's public key file (its NAME.key); "
                        "needs --bus-secret-key")
    p.add_argument("--bus-secret-key", default=_env("bus-secret-key", None),
                   help="ZeroMQ CURVE: this worker's key pair file (NAME.key_secret from "
                        "keygen); its NAME.key goes in the gateway's --bus-authorized-keys")
    p.add_argument("--bus-shared-memory", metavar="BYTES", type=_ring_capacity,
                   default=_env("bus-shared-memory", DEFAULT_CAPACITY),
                   help="ZeroMQ bus: capacity of the shared-memory ring offered to each "
                        "gateway on this host, which messages of 16 KiB or more then take "
                        "(0, or a power of two from 65536 to 67108864; default 1048576; "
                        "0: no ring of our own, a gateway's ring is still used)")
    p.add_argument("--bus-tls-ca-file", default=_env("bus-tls-ca-file", None),
                   help="rediss://: CA file (PEM) to verify the Redis server's certificate "
                        "(default: the system's CAs)")
    p.add_argument("--bus-tls-cert", default=_env("bus-tls-cert", None),
                   help="rediss://: client certificate (PEM), for tls-auth-clients; "
                        "needs --bus-tls-key")
    p.add_argument("--bus-tls-key", default=_env("bus-tls-key", None),
                   help="rediss://: the client certificate's private key (PEM)")
    p.add_argument("--bus-tls-insecure", action="store_true",
                   default=_env_flag("bus-tls-insecure"),
                   help="rediss://: do not verify the Redis server's certificate nor its "
                        "host name")
    p.add_argument("--concurrency", type=_positive(int), default=_env("concurrency", 100),
                   help="HTTP requests served at once (default 100)")
    p.add_argument("--websocket-capacity", type=_positive(int),
                   default=_env("websocket-capacity", 10000),
                   help="WebSockets open at once, counted apart from HTTP requests "
                        "(default 10000)")
    p.add_argument("--processes", type=_positive(int), default=_env("processes", 1),
                   help="worker processes to fork (default 1)")
    p.add_argument("--max-requests", type=_non_negative_int,
                   default=_env("max-requests", 0),
                   help="recycle a worker process after this many connections (HTTP "
                        "requests and WebSockets): it drains and the supervisor starts a "
                        "fresh one (default 0: never)")
    p.add_argument("--max-requests-jitter", type=_non_negative_int,
                   default=_env("max-requests-jitter", 0),
                   help="add a random 0..N to --max-requests per process, so a pool's "
                        "workers do not recycle at once (default 0)")
    p.add_argument("--health-file", default=_env("health-file", None),
                   help="touch this file at every heartbeat while the event loop runs, for "
                        "a container HEALTHCHECK to test its age (default: none)")
    p.add_argument("--lifespan", choices=("auto", "on", "off"), default=_env("lifespan", "auto"),
                   help="ASGI lifespan protocol (default auto)")
    p.add_argument("--log-level", choices=LOG_LEVELS, default=_env("log-level", "info"))
    p.add_argument("--log-format", choices=LOG_FORMATS, default=_env("log-format", "text"),
                   help="text (default), or json: one object per line (time, level, logger, "
                        "message, process)")
    p.add_argument("--heartbeat-interval", type=_positive(float),
                   default=_env("heartbeat-interval", 1.0),
                   help="seconds between heartbeats (default 1.0); a gateway silent for "
                        "3 intervals is taken as dead")
    p.add_argument("--graceful-timeout", type=_positive(float),
                   default=_env("graceful-timeout", 30.0),
                   help="seconds in-flight connections get to finish on SIGTERM (default 30)")
    p.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default=_env("loop", "auto"),
                   help="event loop (default auto: uvloop when installed)")
    p.add_argument("--no-native", action="store_true", default=_env_flag("no-native"),
                   help="run the pure-Python codec even when the native fast path "
                        "(asgi_bridge._native, built by CMake) is there")
    p.add_argument("--app-dir", default=_env("app-dir", "."),
                   help="directory put first on sys.path to import the app (default .)")
    args = p.parse_args(argv)
    # Defaults read from the environment arrive as strings: convert like the options.
    for name, check in (("concurrency", _positive(int)),
                        ("websocket_capacity", _positive(int)), ("processes", _positive(int)),
                        ("heartbeat_interval", _positive(float)),
                        ("graceful_timeout", _positive(float)),
                        ("max_requests", _non_negative_int),
                        ("max_requests_jitter", _non_negative_int),
                        ("bus_shared_memory", _ring_capacity)):
        try:
            setattr(args, name, check(getattr(args, name)))
        except (ValueError, argparse.ArgumentTypeError) as exc:
            p.error(f"--{name.replace('_', '-')}: {exc}")
    args.bus = split_bus_urls(args.bus or [_env("bus", "")])
    if not args.bus:
        p.error("--bus is required (or ASGI_BRIDGE_BUS)")
    try:
        check_bus_urls(args.bus)
    except ValueError as exc:
        p.error(str(exc))
    if not args.bus_prefix:
        p.error("--bus-prefix must not be empty")
    args.curve = _curve_keys(p, args)
    args.redis_tls = _redis_tls(p, args)
    return args


def _curve_keys(parser, args):
    """CurveKeys from --bus-server-key/--bus-secret-key (both or neither), or None."""
    if not args.bus_server_key and not args.bus_secret_key:
        return None
    if not args.bus_server_key or not args.bus_secret_key:
        parser.error("ZeroMQ CURVE needs both --bus-server-key and --bus-secret-key")
    if args.bus[0].startswith(("redis:", "rediss:")):
        parser.error("--bus-server-key/--bus-secret-key apply to zmq:// buses only")
    try:
        return CurveKeys(args.bus_server_key, args.bus_secret_key)
    except ValueError as exc:
        parser.error(str(exc))


def _redis_tls(parser, args):
    """RedisTls from the --bus-tls-* options (rediss:// only), or None."""
    given = (args.bus_tls_ca_file, args.bus_tls_cert, args.bus_tls_key, args.bus_tls_insecure)
    if not any(given):
        return None
    if not args.bus[0].startswith("rediss://"):
        parser.error("the --bus-tls-* options apply to rediss:// buses only")
    try:
        return RedisTls(*given)
    except ValueError as exc:
        parser.error(str(exc))


def _keygen(argv):
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m asgi_bridge keygen DIR/NAME\n"
              "  writes DIR/NAME.key (public key) and DIR/NAME.key_secret (key pair, mode 0600)",
              file=sys.stderr)
        return 0 if argv == ["--help"] else 2
    try:
        for path in keygen(argv[0]):
            print(path)
    except OSError as exc:
        print(f"python -m asgi_bridge keygen: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keygen"]:
        return _keygen(argv[1:])
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    from .runtime import run
    if args.processes == 1 and not args.max_requests:
        return run(args)
    # A recycled worker needs someone to start the next one: --max-requests implies the
    # supervisor, even for one process.
    from .supervisor import supervise
    return supervise(args.processes, lambda ready: run(args, ready))


if __name__ == "__main__":
    sys.exit(main())
