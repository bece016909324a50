"""Unit keys of a config: the text must be a unit astropy parses and, where the key says so, of the right kind.

Jobs call :func:`check_unit` from their ``check`` (rank 0, before anything is read) so that ``hpcfit validate`` and
``hpcfit run`` reject an unknown unit with the key's line instead of failing later, when the data are opened.
astropy is imported only when a unit is checked.
"""

from __future__ import annotations

import re
from typing import Any, Callable

# kind -> (a unit of that kind every other one converts to, examples for the "allowed" text)
KINDS: dict[str, tuple[str, str]] = {
    "length": ("m", "a length, e.g. Mpc, kpc, pc, m"),
    "flux density": ("Jy", "a spectral flux density, e.g. mJy, Jy, erg / (s cm2 Hz)"),
    "spectral luminosity": ("W / Hz", "a spectral luminosity, e.g. W / Hz, erg / (s Hz)"),
}


def unit_problem(text: Any, kind: str | None = None) -> tuple[str, str | None] | None:
    """(message, allowed) saying why ``text`` is not a unit (of ``kind`` when given), or None when it is one."""
    from astropy import units as u

    try:
        unit = u.Unit(text)
    except (ValueError, TypeError) as exc:
        # astropy's own message is a paragraph about custom units; keep only its spelling hint
        hint = re.search(r"Did you mean (.+?)\?", str(exc))
        allowed = KINDS[kind][1] if kind else "a unit astropy parses, e.g. km/s, K, Jy"
        return (f"'{text}' is not a unit astropy understands"
                + (f" (did you mean {hint.group(1)}?)" if hint else ""), allowed)
    if kind is None:
        return None
    reference, allowed = KINDS[kind]
    if not unit.is_equivalent(u.Unit(reference)):
        return f"'{text}' is a unit of {unit.physical_type}, not a {kind}", allowed
    return None


def check_unit(report: Callable[..., None], key: str, text: Any, kind: str | None = None) -> bool:
    """Report the unit key ``key`` when its value ``text`` is not a unit (of ``kind``); True when it is fine."""
    problem = unit_problem(text, kind)
    if problem is not None:
        report(key, *problem)
    return problem is None
