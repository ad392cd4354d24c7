"""Render a model's Jinja chat template into a prompt string.

The environment mirrors the one Hugging Face ``transformers`` uses for
``apply_chat_template``: a sandboxed, immutable Jinja environment with
``trim_blocks``/``lstrip_blocks``, the ``loopcontrols`` extension, a
``raise_exception`` global, a ``strftime_now`` global and a ``tojson`` filter
that does not HTML-escape. Templates written for transformers therefore render
the same text here.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any, NoReturn

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from voiced.errors import EngineError, ModelError


def _raise_exception(message: str) -> NoReturn:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(format_string: str) -> str:
    return datetime.now().strftime(format_string)  # local time, as transformers does


@lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as err:
        raise ModelError(
            f"the model's chat template does not compile: {err} (line {err.lineno})",
            fix="prepare the model again, or replace its chat_template.jinja",
        ) from err


def render_chat(
    template: str,
    messages: list[dict[str, str]],
    *,
    add_generation_prompt: bool = True,
    bos_token: str,
    eos_token: str,
) -> str:
    """Render ``messages`` (``{"role": ..., "content": ...}``) with a chat ``template``.

    With ``add_generation_prompt`` the text ends with the header of the
    assistant's turn, ready for generation. Raises ModelError for a template
    that does not compile and EngineError when the template rejects the
    conversation (its ``raise_exception``) or fails while rendering.
    """
    compiled = _compile(template)
    try:
        return compiled.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
        )
    except jinja2.exceptions.TemplateError as err:
        raise EngineError(
            f"the chat template rejected the conversation: {err}",
            fix="check the roles and order of the messages passed to the model",
        ) from err
