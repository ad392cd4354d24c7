"""Deciding that an utterance is over before the full silence has passed.

The endpointer waits for ``silence_end_ms`` of silence, the largest fixed cost in
every voice pipeline. At the first short pause the pipeline transcribes
speculatively; if that transcript is plainly complete, waiting longer only adds
latency. "Complete" is judged conservatively: Whisper ended the text with
sentence punctuation and the last word is not one that asks for more words.
"""

from __future__ import annotations

DANGLING_WORDS = frozenset({
    "a", "an", "the", "of", "to", "for", "with", "and", "or", "but", "so", "if", "in", "on",
    "at", "by", "from", "about", "into", "than", "that", "this", "my", "your", "our",
    "their", "is", "are", "was", "were", "be", "what", "how", "why", "who", "where", "when",
    "which", "whose", "set", "turn", "play", "tell", "give", "make", "can", "could",
    "would", "should", "will", "please", "um", "uh", "timer",
})  # fmt: skip
"""Words that ask for more. "timer" too: "Set a timer." is whole as a sentence but
not as a command, and the duration usually follows after a breath."""


def looks_like_full_sentence(text: str) -> bool:
    """Ends with . ? or ! (not "..."), has two words or more, and no dangling last word."""
    stripped = text.strip()
    words = stripped.rstrip(".?!").lower().split()
    return (
        stripped.endswith((".", "?", "!")) and not stripped.endswith("...")
        and len(words) >= 2 and words[-1].strip(",;:") not in DANGLING_WORDS
    )  # fmt: skip
