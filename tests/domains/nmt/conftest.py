"""Shared real parallel text for the NMT domain tests: hand-checked German→English pairs and the offline
gettext corpus (German msgstr → English msgid of the system's catalogs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

# Real German sentences with English translations (everyday and software phrases).
PAIRS = [
    ("Die Datei wurde nicht gefunden .", "The file was not found ."),
    ("Das Programm wurde beendet .", "The program has finished ."),
    ("Bitte geben Sie ein Passwort ein .", "Please enter a password ."),
    ("Der Drucker ist nicht bereit .", "The printer is not ready ."),
    ("Die Verbindung wurde unterbrochen .", "The connection was interrupted ."),
    ("Möchten Sie die Änderungen speichern ?", "Do you want to save the changes ?"),
    ("Das Verzeichnis ist leer .", "The directory is empty ."),
    ("Der Server antwortet nicht .", "The server is not responding ."),
    ("Die Datei ist zu groß .", "The file is too large ."),
    ("Ein unbekannter Fehler ist aufgetreten .", "An unknown error has occurred ."),
    ("Das Netzwerk ist nicht erreichbar .", "The network is unreachable ."),
    ("Die Sitzung ist abgelaufen .", "The session has expired ."),
    ("Der Benutzer existiert bereits .", "The user already exists ."),
    ("Die Einstellungen wurden gespeichert .", "The settings have been saved ."),
    ("Der Vorgang wurde abgebrochen .", "The operation was cancelled ."),
    ("Die Datei ist schreibgeschützt .", "The file is read-only ."),
    ("Das Gerät ist nicht verbunden .", "The device is not connected ."),
    ("Der Speicher ist voll .", "The memory is full ."),
    ("Die Aktualisierung ist fehlgeschlagen .", "The update has failed ."),
    ("Ein Zebra sprang leise über das schlafende Erdferkel .",
     "A zebra quietly jumped over the sleeping aardvark ."),
]


def _write(path: Path, lines: list[str] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lines if isinstance(lines, str) else "".join(f"{s}\n" for s in lines), encoding="utf-8")
    return path


@pytest.fixture
def pairs() -> list[tuple[str, str]]:
    return list(PAIRS)


@pytest.fixture
def write_lines() -> Callable[[Path, list[str] | str], Path]:
    """Write lines (or raw text) to a file, creating folders."""
    return _write


@pytest.fixture(scope="session")
def offline_de_en(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline gettext De→En corpus in WMT layout: 3,000 training pairs, 300 validation pairs."""
    from domains.nmt.offline_corpus import write_corpus

    return write_corpus(tmp_path_factory.mktemp("de-en"), max_pairs=3000, valid_pairs=300)
