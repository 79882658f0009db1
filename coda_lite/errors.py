"""Input the caller got wrong, told apart from a stage's own failure.

raise InputError("the audio is silent")     # the caller's fault: not a component error
malformed_text(["fine", None])             # 'expected text, got NoneType'
"""

from __future__ import annotations


#: Bad input (empty, silent, non-WAV audio...) is the caller's fault, not the component's;
#: stages raise subclasses of this and it is not counted as a component error.
class InputError(ValueError):
    """The input handed to a stage cannot be processed; the message says what was wrong."""


#: What malformed text makes Python code raise (UnicodeError is a ValueError).
INPUT_SHAPED = (TypeError, ValueError, AttributeError)


def malformed_text(value: object) -> str | None:
    """Why ``value`` is not usable text (a string, or a list or tuple of them); None if it is.

    >>> malformed_text(["fine", None])
    'expected text, got NoneType'
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"text is not valid Unicode ({exc.reason} at position {exc.start})"
        return None
    if isinstance(value, list | tuple):
        for item in value:
            if (why := malformed_text(item)) is not None:
                return why
        return None
    return f"expected text, got {type(value).__name__}"
