"""A fast read of the few header cards that planning needs, with astropy as the referee for anything unusual.

Planning a night of frames reads one primary header per file and looks at a dozen cards (BITPIX, NAXISn, BZERO,
BSCALE, BLANK, IMAGETYP, DATE-OBS, the exposure keys, FILTER, ...). Building an ``astropy.io.fits.Header`` of every
card costs most of the scan's CPU time, so :func:`parse_cards` reads the header text directly and parses only the
cards asked for. It gives the values astropy's ``Header`` would give (same types, same string stripping) for
headers of the common, standard form, and gives up — returns None, so the caller parses the header with astropy
as before — whenever the header holds something whose meaning astropy decides by rules this module does not repeat:

- a byte that is not ASCII anywhere in the header, or no exact ``END`` card;
- a wanted keyword that is not a standard one (longer than 8 characters, characters other than ``A-Z0-9_-``);
- a wanted card that is not ``KEYWORD= value`` with the ``= `` in columns 9-10, appears twice, is followed by
  ``CONTINUE`` cards, holds a record-valued string (``'AXIS.1: 1'``), an undefined or complex value, a number in a
  free format (spaces, lower-case exponents), or anything astropy would refuse (then astropy raises as before);
- a card whose keyword astropy could read as a wanted one by its own conventions (``HIERARCH EXPTIME = ...``,
  ``EXPTIME= 3``, lower-case keywords).

Cards that are not wanted are skipped unread, as astropy's lazy ``Header`` skips them too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

CARD = 80
END_CARD = "END" + " " * 77
# Keys whose every numbered form is wanted with the key (NAXIS -> NAXIS1, NAXIS2, ...).
FAMILIES = ("NAXIS",)
_STANDARD_KEY = re.compile(r"[A-Z0-9_-]{1,8}")
_FAMILY_KEY = re.compile(r"(?:%s)\d+" % "|".join(FAMILIES))  # as asked for: NAXIS1 .. NAXIS<NAXIS>
# astropy.io.fits.Card's value syntax (``_value_NFSC_RE``), narrowed to the forms parsed here: a string (the same
# lazy match as astropy's, so that quotes and comments split the same way), a logical, or a fixed-format number.
_VALUE = re.compile(
    r" *(?:'(?P<strg>(?:[ -~]+?|''|) *?)'(?=$|/| )"
    r"|(?P<bool>[FT])"
    r"|(?P<numr>[+-]?(?:\.\d+|\d+(?:\.\d*)?)(?:[DE][+-]?\d+)?))"
    r" *(?:/ *[\s\S]*)?$"
)
_RECORD_VALUED = re.compile(r"^ *'[^']*: ")  # astropy reads 'FIELD.SPEC: number' as a record-valued keyword card


class HeaderCards(Mapping[str, Any]):
    """The wanted cards of one header, read only (``get``, ``in``, ``[]`` as on an astropy ``Header``).

    Asking for a key that was not wanted is a programming error (KeyError naming it), not a missing card."""

    __slots__ = ("_values", "_wanted")

    def __init__(self, values: dict[str, Any], wanted: frozenset[str]) -> None:
        self._values = values
        self._wanted = wanted

    def _key(self, key: str) -> str:
        upper = key.upper()
        if upper not in self._wanted and not _FAMILY_KEY.fullmatch(upper):
            raise KeyError(f"{key!r} was not among the header cards read ({', '.join(sorted(self._wanted))})")
        return upper

    def __getitem__(self, key: str) -> Any:
        return self._values[self._key(key)]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._key(key) in self._values

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(self._key(key), default)

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def wanted_keys(keys: Iterable[str]) -> frozenset[str] | None:
    """The keys in the form cards are matched by (upper case), or None when one is not a standard keyword."""
    out = frozenset(k.upper() for k in keys)
    return out if all(_STANDARD_KEY.fullmatch(k) for k in out) else None


def parse_cards(raw: bytes, wanted: frozenset[str]) -> HeaderCards | None:
    """The cards of ``wanted`` (see :func:`wanted_keys`) and every ``NAXISn`` from the header blocks ``raw``, or
    None when the header is not of the plain form this parser vouches for (the caller then asks astropy)."""
    if not raw.isascii():
        return None
    text = raw.decode("ascii")
    values: dict[str, Any] = {}
    previous_wanted = False
    for start in range(0, len(text) - CARD + 1, CARD):
        card = text[start:start + CARD]
        head = card[:8]
        if head == "CONTINUE":
            if previous_wanted:  # astropy joins it to the wanted string: a long-string value
                return None
            continue
        previous_wanted = False
        if card == END_CARD:
            return HeaderCards(values, wanted)
        name = head.rstrip(" ")
        if name != "HIERARCH" and _STANDARD_KEY.fullmatch(name):
            if name not in wanted and not _FAMILY_KEY.fullmatch(name):
                continue
            if card[8:10] != "= " or name in values:
                return None
            value = _value(card[10:])
            if value is None:
                return None
            values[name] = value
            previous_wanted = True
        elif _astropy_might_read_as(card, wanted):
            return None
    return None  # no END card of astropy's exact form


def _value(text: str) -> Any:
    """The value of a card's value field as astropy types it, or None for a form left to astropy."""
    m = _VALUE.match(text)
    if m is None:
        return None
    if m.group("bool") is not None:
        return m.group("bool") == "T"
    strg = m.group("strg")
    if strg is not None:
        if _RECORD_VALUED.match(text):
            return None
        return strg.replace("''", "'").rstrip()
    digits = m.group("numr").replace("D", "E")
    try:
        return int(digits)
    except ValueError:
        return float(digits)


def _astropy_might_read_as(card: str, wanted: frozenset[str]) -> bool:
    """True when astropy could take this non-standard card for one of the wanted keys (HIERARCH, an early ``=``,
    lower case, stray spaces)."""
    if card[:9].upper() == "HIERARCH ":
        name = card.split("=", 1)[0][9:]
    else:
        cut = card.find("= ")
        name = card[:cut] if 0 <= cut <= 8 else card[:8]
    name = name.strip().upper()
    return name in wanted or bool(_FAMILY_KEY.fullmatch(name))
