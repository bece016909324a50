"""The fast header-card parse (``headercards``) against astropy: the same values and types for every card planning
reads, on real frames and on synthetic headers with odd cards, and a fall-back to astropy (None) wherever astropy's
own conventions decide; the frames planned through it equal those planned through astropy; the stat-free listing
finds what ``rglob`` finds."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from hpcfit.calibrate.kernels import frames as F
from hpcfit.calibrate.kernels.headercards import parse_cards, wanted_keys
from hpcfit.calibrate.kernels.synthetic import write_raw_frame

M13 = [f"m13_raw/M13_blue_000{i}.fits" for i in range(1, 6)]
OPTIONS = F.ScanOptions(extra_keys=("GAIN", "RDNOISE"))
WANTED = OPTIONS.header_keys()
BASE = ["SIMPLE  =                    T", "BITPIX  =                   16", "NAXIS   =                    2",
        "NAXIS1  =                    4", "NAXIS2  =                    3", "BZERO   =                32768",
        "BSCALE  =                    1"]


def blocks(cards: list[str], end: str = "END") -> bytes:
    """Header blocks of these card images (padded to 80 characters) and an END card."""
    text = "".join(c.ljust(80)[:80] for c in cards) + end.ljust(80)
    text += " " * (-len(text) % 2880)
    return text.encode("latin-1")


def astropy_values(raw: bytes) -> dict[str, object] | Exception:
    """What astropy's Header gives for every wanted key and NAXISn (or the exception it raises)."""
    header = F.astropy_header(raw)
    keys = set(WANTED) | {f"NAXIS{i}" for i in range(1, 10)}
    try:
        return {k: header[k] for k in keys if k in header}
    except Exception as exc:  # noqa: BLE001 - astropy refuses a card
        return exc


def assert_agrees(raw: bytes) -> bool:
    """The fast parse gives astropy's values and types for every key, or gives up; returns True when it parsed."""
    cards = parse_cards(raw, WANTED)
    if cards is None:
        return False
    expected = astropy_values(raw)
    assert not isinstance(expected, Exception), f"parsed what astropy refuses: {expected}"
    got = {k: cards[k] for k in cards}
    assert got == expected
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in expected.items()}
    return True


def test_real_frames_parse_as_astropy_reads_them(shared_path):
    for name in M13:
        raw = F.read_header_blocks(shared_path(name))
        assert assert_agrees(raw), f"{name}: a plain camera header should not need astropy"
        frame = F.read_frame(shared_path(name), OPTIONS)
        assert frame == _astropy_frame(shared_path(name), OPTIONS)
        assert frame.ok and frame.exptime == 5.0 and frame.shape == (1040, 1392)


def _astropy_frame(path: Path, options: F.ScanOptions) -> F.Frame:
    """The frame read_frame plans when every header goes through astropy."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(F.ScanOptions, "header_keys", lambda self: None)
        return F.read_frame(path, options)


@pytest.mark.parametrize("cards,parsed", [
    # plain values: strings (quotes, blanks, trailing spaces), logicals, integers, floats, D exponents, comments
    ([ "IMAGETYP= 'Light Frame'        / type", "EXPTIME =                 30.0", "FILTER  = '  V   '"], True),
    (["FILTER  = 'it''s'", "EXPTIME =               1.5D2", "GAIN    = T", "RDNOISE =                  007"], True),
    (["FILTER  = ''", "EXPTIME = +.5", "IMAGETYP= ' '", "DATE-OBS= '2024-03-10T22:30:00' /no space"], True),
    (["FILTER  = 'a'' /x'", "EXPTIME = 1E3"], True),  # astropy's own split of quotes and comment
    # cards not wanted are left alone, whatever they hold
    (["COMMENT   anything at all", "HISTORY = 'x'", "", "OBJECT  = 'M13' ", "HIERARCH ESO DET GAIN = 2.0",
      "LONGSTR = 'abc&'", "CONTINUE  'def'", "WEIRD   = abc", "EXPTIME =                   10"], True),
    # left to astropy
    (["FILTER  = 'abc&'", "CONTINUE  'def'"], False),  # a wanted long string
    (["HIERARCH EXPTIME = 3"], False),  # astropy reads it as EXPTIME
    (["EXPTIME= 3"], False),  # value indicator in column 8
    (["exptime =                    3"], False),  # lower-case keyword
    (["EXPTIME =                   10", "EXPTIME =                   20"], False),  # twice
    (["FILTER  = 'AXIS.1: 1'"], False),  # record-valued keyword card
    (["EXPTIME ="], False),  # undefined value
    (["EXPTIME = (1, 2)"], False),  # complex
    (["EXPTIME = 1.5 e2"], False),  # free-format number
    (["EXPTIME = abc"], False),  # astropy refuses it (and raises, as before)
    (["FILTER  = 'abc"], False),  # unterminated string
    (["EXPTIME   3"], False),  # no value indicator
])
def test_odd_cards(cards, parsed):
    raw = blocks(BASE + cards)
    assert assert_agrees(raw) is parsed


def test_non_ascii_and_odd_end_cards_fall_back():
    assert parse_cards(blocks(BASE + ["OBJECT  = 'caf\xe9'"]), WANTED) is None
    assert parse_cards(blocks(BASE, end="END     garbage"), WANTED) is None
    assert parse_cards(blocks(BASE), WANTED) is not None


def test_unwanted_keys_are_refused_and_nonstandard_wanted_keys_fall_back():
    cards = parse_cards(blocks(BASE), WANTED)
    with pytest.raises(KeyError, match="OBJECT"):
        cards.get("OBJECT")
    assert cards.get("naxis1") == 4 and "NAXIS3" not in cards  # case as astropy; every NAXISn is read
    assert wanted_keys(["EXPTIME", "HIERARCH ESO DET GAIN"]) is None
    assert wanted_keys(["exptime"]) == frozenset({"EXPTIME"})


def test_mutated_headers_agree_with_astropy_or_fall_back():
    """Random edits of a header's value fields: whenever the fast parse accepts, it agrees with astropy."""
    rng = random.Random(14)
    alphabet = " '/=TF+-.0123456789DEabcxyz&:()"
    cards = BASE + ["IMAGETYP= 'Light Frame'", "DATE-OBS= '2024-03-10T22:30:00'", "EXPTIME =                 30.0",
                    "FILTER  = 'V'", "GAIN    =                  1.5", "RDNOISE =                  9.0"]
    parsed = 0
    for _ in range(600):
        mutated = list(cards)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(1, len(mutated))
            card = mutated[i].ljust(80)
            at = rng.randrange(8, 40)
            card = card[:at] + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) + card[at + 1:]
            mutated[i] = card[:80]
        parsed += assert_agrees(blocks(mutated))
    assert parsed > 20  # enough edits leave a header the fast parse vouches for (39 with this seed)


def test_frames_planned_through_either_parse_are_equal(tmp_path):
    """read_frame over synthetic files with odd cards: the same Frame as when astropy reads every header."""
    shape = (3, 4)
    paths = [write_raw_frame(tmp_path / "ScienceImages" / "plain.fits", np.zeros(shape), IMAGETYP="Light Frame",
                             EXPTIME=30.0, FILTER="V", DATE_OBS="2024-03-10T22:30:00", GAIN=1.5),
             write_raw_frame(tmp_path / "Darks" / "old_date.fits", np.zeros(shape), IMAGETYP="dark", EXPTIME=60,
                             DATE_OBS="10/03/24", UT="22:30:00")]
    odd = fits.PrimaryHDU(np.zeros(shape, np.uint16))
    odd.header["FILTER"] = "V" * 100  # a long string: CONTINUE cards after a wanted key
    odd.header["IMAGETYP"] = "Light Frame"
    odd.header["EXPTIME"] = 5.0
    odd.header["HIERARCH ESO DET GAIN"] = 2.0
    odd.writeto(tmp_path / "ScienceImages" / "odd.fits")
    paths.append(tmp_path / "ScienceImages" / "odd.fits")
    huge = bytearray((tmp_path / "ScienceImages" / "odd.fits").read_bytes())  # NAXIS = 1200: a corrupt frame
    at = huge.index(b"NAXIS   =")
    huge[at:at + 80] = b"NAXIS   =                 1200".ljust(80)
    (tmp_path / "ScienceImages" / "huge.fits").write_bytes(bytes(huge))
    paths.append(tmp_path / "ScienceImages" / "huge.fits")
    for path in paths:
        assert F.read_frame(path, OPTIONS) == _astropy_frame(path, OPTIONS), path.name
    assert not F.read_frame(paths[-1], OPTIONS).ok


def test_files_under_lists_what_rglob_finds(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.fits", "a/b/y.fits", ".hidden.fits", "top.txt"):
        (tmp_path / name).write_text("")
    (tmp_path / "file_link.fits").symlink_to(tmp_path / "a" / "x.fits")
    (tmp_path / "dir_link").symlink_to(tmp_path / "a")  # not followed, as rglob
    (tmp_path / "broken.fits").symlink_to(tmp_path / "nowhere")
    expected = sorted(str(p) for p in tmp_path.rglob("*") if p.is_file())
    assert sorted(str(p) for p in F.files_under(tmp_path)) == expected
    assert len(expected) == 5
