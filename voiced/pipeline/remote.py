"""The seam for a turn run elsewhere: a Home Assistant satellite link
(voiced.wyoming.satellite) takes the wake word and the microphone while engaged."""

from __future__ import annotations

from typing import Protocol


class RemoteTurns(Protocol):
    @property
    def engaged(self) -> bool:
        """Someone else runs the turns now (the session stays idle meanwhile)."""
        ...

    @property
    def busy(self) -> bool:
        """A remote turn is streaming or its reply is playing."""
        ...

    @property
    def streaming(self) -> bool:
        """The microphone goes to the remote turn (no wake word is scored)."""
        ...

    def woke(self, words: tuple[str, ...]) -> None:
        """The wake word was heard (``words``: the model names that fired)."""
        ...

    def hear(self, pcm: bytes) -> None:
        """One microphone frame (16 kHz mono int16)."""
        ...

    def stop(self) -> None:
        """A stop word: the remote turn ends (its reply is cleared off the speaker)."""
        ...
