"""The system's compiled gettext catalogs (``.mo``), read directly: real text in many languages, offline.

A ``.mo`` file is a fixed header plus two tables of (length, offset) pairs, originals and translations (GNU
gettext manual, "The Format of GNU MO Files"). Reading the tables directly is several times faster than
``gettext.GNUTranslations``, which decodes and plural-parses every entry. The LM domain reads the English
msgids, the NMT domain the (msgid, msgstr) pairs of the German catalogs.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

MO_MAGIC = 0x950412DE


def mo_entries(path: Path, translations: bool = True) -> Iterator[tuple[bytes, bytes]]:
    """Raw (msgid, msgstr) pairs of one catalog, undecoded (msgstr is b"" when ``translations`` is False);
    nothing for a file that is not a .mo."""
    data = path.read_bytes()
    if len(data) < 20:
        return
    for order in ("<", ">"):
        if struct.unpack_from(f"{order}I", data)[0] == MO_MAGIC:
            break
    else:
        return
    count, originals, translated = struct.unpack_from(f"{order}3I", data, 8)
    ids = struct.iter_unpack(f"{order}2I", data[originals:originals + 8 * count])
    if not translations:
        for length, offset in ids:
            yield data[offset:offset + length], b""
        return
    strs = struct.iter_unpack(f"{order}2I", data[translated:translated + 8 * count])
    for (il, io), (sl, so) in zip(ids, strs, strict=True):
        yield data[io:io + il], data[so:so + sl]
