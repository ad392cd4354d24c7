"""`voiced run`: load the engines, open audio, and run the assistant until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from voiced.audio.devices import is_device_spec, sound_card_name
from voiced.audio.resilient import ResilientSource
from voiced.audio.room import RoomSimulator, attach_room
from voiced.audio.sinks import AudioSink, open_sink
from voiced.audio.soundcard import SoundcardSource
from voiced.audio.sources import AudioSource, open_source
from voiced.control.hooks import load_hooks
from voiced.control.mqtt import MqttPublisher
from voiced.control.plane import ControlPlane, house_arbiter, mqtt_publisher
from voiced.engines.loader import Engines, load_engines
from voiced.errors import UsageError, VoicedError
from voiced.house.room_intent import RoomAnnouncements
from voiced.intents.base import IntentHandler
from voiced.intents.user import UserIntent, load_user_intents
from voiced.models.manifest import Role
from voiced.pipeline.assistant import Assistant
from voiced.pipeline.events import Event, EventBus, EventType
from voiced.pipeline.runner import run_stream
from voiced.pipeline.turn import TraceWriter
from voiced.service.sdnotify import SystemdNotifier, watchdog_loop
from voiced.settings import Settings, load_settings
from voiced.wyoming.server import WyomingServer, start_wyoming

_LOGGER = logging.getLogger(__name__)
LOAD_TIMEOUT_EXTENSION_US = 120_000_000


@dataclass(frozen=True, slots=True)
class RunOptions:
    settings: Settings
    models_dir: Path
    wake_mode: bool = True
    input: str | None = None
    output: str | None = None
    realtime: bool = False
    trace: Path | None = None
    config: Path | None = None
    """Re-read on SIGHUP (``systemctl reload voiced``) for its intents and hooks."""
    simulate_room: str | None = None
    """A room preset or impulse-response WAV: the output is played back into the
    (file) input through it (voiced.audio.room)."""


def needed_roles(settings: Settings, wake_mode: bool) -> set[Role]:
    roles = {Role.ASR, Role.TTS}
    if settings.slm.enabled:
        roles.add(Role.SLM)
    if wake_mode:
        roles.add(Role.WAKE)
    return roles


async def load(settings: Settings, models_dir: Path, roles: set[Role]) -> Engines:
    """Load the engines off the event loop, telling systemd that it may take a while."""
    notifier = SystemdNotifier()
    notifier.extend_timeout(LOAD_TIMEOUT_EXTENSION_US)
    notifier.status("loading models")
    return await asyncio.to_thread(load_engines, settings, models_dir, roles)


async def run_daemon(options: RunOptions, engines: Engines | None = None) -> int:
    """The daemon's main coroutine; returns the process exit code."""
    realtime = options.realtime or is_device_spec(options.input)
    if engines is None:
        roles = needed_roles(options.settings, options.wake_mode)
        engines = await load(options.settings, options.models_dir, roles)
    settings = options.settings
    publisher = mqtt_publisher(settings)
    house = house_arbiter(settings, publisher) if options.wake_mode else None
    intents = load_user_intents(settings.intent, publisher=publisher)
    handlers: list[IntentHandler] = list(intents)
    if publisher is not None and settings.house.rooms:
        handlers.append(RoomAnnouncements(settings.house.rooms, publisher))
    mic = _MicReport()
    source = _open_input(options.input, realtime, settings, mic)
    sink = open_sink(options.output, realtime)
    room = _simulated_room(options, sink)
    trace = TraceWriter(options.trace) if options.trace else None
    microphone = sound_card_name(options.input)
    assistant = Assistant(settings, engines, sink, EventBus(), wake_mode=options.wake_mode,
                          trace=trace, extra_intents=handlers, state_dir=_state_dir(),
                          house=house, microphone=microphone)  # fmt: skip
    mic.assistant = assistant
    plane: ControlPlane | None = None
    wyoming: WyomingServer | None = None
    try:
        plane = await ControlPlane.start(
            assistant, settings, publisher, xruns=lambda: int(getattr(source, "xruns", 0)),
            house=house,
        )
        if settings.wyoming.listen:
            wyoming = await start_wyoming(assistant, settings)
        reloader = Reloader(options.config, assistant, plane, publisher, list(intents))
        await _serve(assistant, source, realtime=realtime, reload=reloader.reload, room=room)
    finally:
        if wyoming is not None:
            await wyoming.close()
        if plane is not None:
            await plane.close()
        await assistant.close()
        _close_quietly(source, sink)
        if trace is not None:
            trace.close()
    return 0


class Reloader:
    """SIGHUP: the config's ``[[intent]]`` and ``[[hook]]`` tables read again and
    swapped in between events; the audio, the models and the rest of the settings
    stay as they are. A config that no longer loads is logged and changes nothing."""

    def __init__(
        self, config: Path | None, assistant: Assistant, plane: ControlPlane,
        publisher: MqttPublisher | None, intents: list[UserIntent],
    ) -> None:  # fmt: skip
        self.config, self.assistant, self.plane = config, assistant, plane
        self.publisher = publisher
        self.intents = intents
        self.reloads = 0

    def reload(self) -> None:
        try:
            fresh = load_settings(self.config)
            intents = load_user_intents(fresh.intent, publisher=self.publisher)
            hooks = load_hooks(fresh.hook)
        except VoicedError as err:
            _LOGGER.error("reload refused; the running intents and hooks stay:\n%s",
                          err.render())  # fmt: skip
            return
        handlers = self.assistant.responder.handlers
        old = set(map(id, self.intents))
        handlers[:] = [*intents, *(h for h in handlers if id(h) not in old)]
        self.assistant.responder.refresh_prompt()  # the model is told of the new commands
        self.intents = list(intents)
        self.plane.hooks.replace_hooks(hooks)
        self.reloads += 1
        _LOGGER.info("reloaded %s: %d intents, %d hooks", self.config or "the defaults",
                     len(intents), len(hooks))  # fmt: skip


async def _serve(
    assistant: Assistant, source: AudioSource, *, realtime: bool,
    reload: Callable[[], None] | None = None, room: RoomSimulator | None = None,
) -> None:  # fmt: skip
    notifier = SystemdNotifier()
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, _request_stop, main, notifier)
    if reload is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, reload)
    readiness = asyncio.create_task(_announce_ready(assistant, notifier))
    watchdog = asyncio.create_task(watchdog_loop(notifier, assistant.watchdog_progress))
    try:
        await run_stream(assistant, source, realtime=realtime, room=room)
    except asyncio.CancelledError:
        _LOGGER.info("stopping")
    finally:
        for task in (readiness, watchdog):
            task.cancel()
        await asyncio.gather(readiness, watchdog, return_exceptions=True)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


async def _announce_ready(assistant: Assistant, notifier: SystemdNotifier) -> None:
    """READY=1 only once models are loaded and the first audio frame has arrived."""
    await assistant.first_frame.wait()
    notifier.ready(status=f"{assistant.state.value}")
    _LOGGER.info("ready: %s", "listening for the wake word" if assistant.wake_mode else "listening")
    while True:
        await asyncio.sleep(1.0)
        notifier.status(assistant.state.value)


def _request_stop(main: asyncio.Task[object] | None, notifier: SystemdNotifier) -> None:
    notifier.stopping()
    if main is not None:
        main.cancel()


def _simulated_room(options: RunOptions, sink: AudioSink) -> RoomSimulator | None:
    if options.simulate_room is None:
        return None
    if options.input is None or is_device_spec(options.input):
        raise UsageError("--simulate-room plays the replies into a file input: give --input "
                         "FILE.wav (or '-')")  # fmt: skip
    return attach_room(sink, options.simulate_room)


def _open_input(spec: str | None, realtime: bool, settings: Settings,
                mic: _MicReport) -> AudioSource:  # fmt: skip
    """A sound card is wrapped so that an unplugged microphone is reopened, not fatal;
    files and stdin end when they end."""
    rate_hz = settings.audio.capture_sample_rate_hz
    source = open_source(spec, realtime, capture_rate_hz=rate_hz)
    if not isinstance(source, SoundcardSource):
        return source
    exit_after = settings.audio.mic_lost_exit_s or None
    return ResilientSource(lambda: open_source(spec, realtime, capture_rate_hz=rate_hz),
                           on_lost=mic.lost,
                           on_restored=mic.restored, exit_after_s=exit_after)  # fmt: skip


class _MicReport:
    """Tells the assistant's bus, the log and systemd that the microphone went or came."""

    def __init__(self) -> None:
        self.assistant: Assistant | None = None
        self.notifier = SystemdNotifier()

    def lost(self, reason: str) -> None:
        _LOGGER.warning("microphone lost: %s; retrying", reason)
        self.notifier.status(f"mic lost: {reason}")
        if self.assistant is not None:
            self.assistant.bus.publish(Event(EventType.MIC_LOST, {"reason": reason}))

    def restored(self) -> None:
        _LOGGER.info("microphone back")
        self.notifier.status("listening")
        if self.assistant is not None:
            self.assistant.bus.publish(Event(EventType.MIC_RESTORED))


def _close_quietly(source: AudioSource, sink: AudioSink) -> None:
    for closable in (source, sink):
        try:
            closable.close()
        except OSError as err:
            _LOGGER.warning("closing %s: %s", type(closable).__name__, err)


def _state_dir() -> Path | None:
    """systemd's StateDirectory= (timers survive a restart there); None elsewhere."""
    value = os.environ.get("STATE_DIRECTORY", "")
    return Path(value.split(":")[0]) if value else None
