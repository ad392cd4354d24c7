"""`voiced run` and `voiced devices`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from voiced.audio.devices import format_device_table, is_device_spec, list_devices
from voiced.audio.room import ROOMS, load_room
from voiced.cli.common import add_settings_options, run_async, settings_and_models_dir
from voiced.daemon import RunOptions, run_daemon
from voiced.errors import UsageError
from voiced.settings import parse_host_port, replace_section


def register(commands: Any) -> None:
    run = commands.add_parser("run", help="run the assistant (the daemon)")
    add_settings_options(run)
    run.add_argument(
        "--no-wake", action="store_true",
        help="every utterance is a turn (kiosks, push-to-talk, benchmarks)",
    )  # fmt: skip
    run.add_argument("--input", metavar="SPEC",
                     help="a WAV file, '-' for raw s16le 16 kHz mono on stdin, 'null', or a "
                     "device (hw:CARD=USB,DEV=0, a name or index from `voiced devices`, "
                     "device:NAME); overrides [audio] input (default: the default "
                     "microphone)")  # fmt: skip
    run.add_argument("--output", metavar="SPEC",
                     help="a WAV file, '-' for raw PCM on stdout, 'null', or a device; "
                     "overrides [audio] output (default: the default speaker)")  # fmt: skip
    run.add_argument(
        "--realtime", action="store_true",
        help="pace file input at 1x; a WAV output is then time-aligned with it",
    )  # fmt: skip
    run.add_argument("--http", metavar="HOST:PORT",
                     help="serve the HTTP API here (config http.listen)")  # fmt: skip
    run.add_argument("--mqtt", metavar="HOST:PORT",
                     help="connect to this MQTT broker (config [mqtt] host/port)")  # fmt: skip
    run.add_argument("--wyoming", metavar="HOST:PORT",
                     help="serve Home Assistant's Wyoming protocol here, e.g. 0.0.0.0:10700 "
                     "(config [wyoming] listen; ':10700' is loopback)")  # fmt: skip
    run.add_argument("--trace", metavar="FILE.jsonl", type=Path,
                     help="write one JSON object per turn with its stage times")  # fmt: skip
    run.add_argument("--simulate-room", metavar="NAME|IR.wav",
                     help="play the output back into a file input through a simulated room "
                     f"({', '.join(ROOMS)}) or an impulse-response WAV; implies "
                     "--realtime")  # fmt: skip
    run.set_defaults(func=cmd_run)

    devices = commands.add_parser("devices", help="list sound cards")
    devices.set_defaults(func=cmd_devices)
    register_demo(commands)


def cmd_run(args: argparse.Namespace) -> int:
    if args.simulate_room is not None:
        load_room(args.simulate_room)  # a bad name or file is told before models load
    settings, models_dir = settings_and_models_dir(args)
    if args.http:
        settings = replace_section(settings, "http", listen=args.http)
    if args.wyoming:
        if parse_host_port(args.wyoming, "127.0.0.1") is None:
            raise UsageError(f"--wyoming wants HOST:PORT, got {args.wyoming!r:.60}")
        settings = replace_section(settings, "wyoming", listen=args.wyoming)
    if args.mqtt:
        host, port = _host_port(args.mqtt, "--mqtt")
        settings = replace_section(settings, "mqtt", host=host, port=port)
    # A file or stdin named in the config is heard at 1x, as a microphone would be:
    # a service that raced through its input and exited would be no service.
    configured_input = args.input is None and settings.audio.input is not None
    options = RunOptions(
        settings=settings, models_dir=models_dir, wake_mode=not args.no_wake,
        input=args.input if args.input is not None else settings.audio.input,
        output=args.output if args.output is not None else settings.audio.output,
        realtime=args.realtime or configured_input or args.simulate_room is not None,
        trace=args.trace, config=args.config, simulate_room=args.simulate_room,
    )  # fmt: skip
    if options.simulate_room is not None and is_device_spec(options.input):
        raise UsageError("--simulate-room plays the replies into a file input: give --input "
                         "FILE.wav (or '-') and a .wav, '-' or 'null' --output")  # fmt: skip
    return run_async(run_daemon(options))


def _host_port(value: str, flag: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{flag} wants HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def cmd_devices(args: argparse.Namespace) -> int:
    print(format_device_table(list_devices()))
    return 0


def register_demo(commands: Any) -> None:
    demo = commands.add_parser("demo", help="speak two prompts through the whole pipeline")
    add_settings_options(demo)
    demo.add_argument("--output", metavar="WAV", type=Path, default=Path("voiced-demo.wav"),
                      help="where the replies go (default ./voiced-demo.wav)")  # fmt: skip
    demo.add_argument("--unpaced", action="store_true",
                      help="read the prompts as fast as the machine allows, each turn finished "
                           "before the next (an emulator or a slow board); no latency")  # fmt: skip
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from voiced.demo import run_demo

    settings, models_dir = settings_and_models_dir(args)
    turns = run_async(run_demo(settings, models_dir, args.output, paced=not args.unpaced))
    return 0 if turns and all(t.get("reply") for t in turns) else 1
