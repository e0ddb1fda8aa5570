"""Real speech available offline: eSpeak NG reads real English sentences aloud, written in LibriSpeech layout.

Tests and the quickstart need speech without downloading anything (DESIGN §6). eSpeak NG is a formant
synthesizer that ships as a library: the PyPI package ``espeakng-loader`` bundles ``libespeak-ng.so`` and its
voice data (preferred: a pip dependency), and the Debian package ``espeak-ng`` installs the same library
system-wide (the fallback). It is driven here through ctypes with its documented C API (``speak_lib.h``):
``espeak_Initialize`` in synchronous mode, a synth callback that collects 16-bit samples, and
``espeak_SetVoiceByName`` / ``espeak_SetParameter`` for voice, rate and pitch.

Sentences are the short ones of ``domains.lm.offline_corpus.english_sentences`` (gettext catalogs and Python
docs) made of plain words; each utterance is one distinct sentence, spoken by one of 16 "speakers" (an
English accent with a male or female variant and a pitch) at a rate varied per "chapter". Audio is written
as 16-bit FLAC at eSpeak's own 22,050 Hz, so the loader's resampling to 16 kHz is exercised as for any corpus
that is not at 16 kHz. Measured: about 3 ms of CPU per utterance; 600 utterances take ~2 s plus ~4 s to
read the sentence sources.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from domains.base import DataSourceError
from domains.cache import manifest_params, write_manifest

FORMAT_VERSION = 2
TRAIN_SPLIT, VALID_SPLIT = "train-espeak", "dev-espeak"
INSTALL_HINT = "pip install espeakng-loader (bundles libespeak-ng), or apt-get install espeak-ng"

ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VARIANTS = ("m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "f5", "m6", "m7")
RATES = (140, 160, 175, 190, 210)  # words per minute (eSpeak's default is 175)
UTTERANCES_PER_CHAPTER = 25

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH = 1, 3
_WORD = re.compile(r"^(?:[a-z]+|[A-Z][a-z]+|A|I)(?:'[a-z]+)?$")
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class Synthesizer:
    """One process-wide eSpeak NG instance (the library keeps global state); calls are serialized."""

    _instance: Synthesizer | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        lib, data_path = _load_library()
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise DataSourceError(f"eSpeak NG failed to initialize (data path {data_path!r}); {INSTALL_HINT}")
        self.lib, self.sample_rate = lib, rate
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: the library calls it
        lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> Synthesizer:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _collect(self, wav: ctypes.POINTER(ctypes.c_short), n: int, _events: int) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def speak(self, text: str, voice: str, rate: int = 175, pitch: int = 50) -> np.ndarray:
        """16-bit samples at ``sample_rate`` of ``text`` read by ``voice`` (e.g. ``"en-us+f2"``)."""
        with self._lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"eSpeak NG has no voice {voice!r}")
            self.lib.espeak_SetParameter(_RATE, int(rate), 0)
            self.lib.espeak_SetParameter(_PITCH, int(pitch), 0)
            self._chunks = []
            raw = text.encode()
            status = self.lib.espeak_Synth(raw, len(raw) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if status != 0:
                raise RuntimeError(f"eSpeak NG synthesis failed with status {status} for {text!r}")
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def _load_library() -> tuple[ctypes.CDLL, bytes | None]:
    """The bundled library of ``espeakng-loader`` with its data folder, else the system's libespeak-ng."""
    try:
        import espeakng_loader

        return ctypes.CDLL(espeakng_loader.get_library_path()), espeakng_loader.get_data_path().encode()
    except (ImportError, OSError, RuntimeError):
        pass
    name = ctypes.util.find_library("espeak-ng")
    if name is None:
        raise DataSourceError(f"builtin:espeak needs eSpeak NG, which is not installed; {INSTALL_HINT}")
    return ctypes.CDLL(name), None


def speakable(sentence: str, min_words: int = 3, max_words: int = 8) -> str | None:
    """The words of a tokenized sentence when it is plain words (lower-case or capitalized, no acronyms,
    digits or symbols, which eSpeak would spell out unlike the transcript) with at most a comma between and
    one final mark, else None."""
    tokens = sentence.split()
    if tokens and tokens[-1] in {".", "!", "?"}:
        tokens = tokens[:-1]
    words = [t for t in tokens if t != ","]
    if not min_words <= len(words) <= max_words or tokens[0] == "," or tokens[-1] == ",":
        return None
    if not all(_WORD.match(w) for w in words):
        return None
    return " ".join(words)


def write_espeak_corpus(out_dir: str | Path, train_utterances: int = 500, valid_utterances: int = 100,
                        min_words: int = 3, max_words: int = 8, seed: int = 0,
                        sentences: Callable[[], list[str]] | None = None) -> Path:
    """Synthesize the corpus under ``out_dir`` (once) and return ``out_dir``.

    ``out_dir/train-espeak`` and ``out_dir/dev-espeak`` are LibriSpeech-layout trees
    (``<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` plus ``<speaker>-<chapter>.trans.txt`` with upper-case
    transcripts). The folder is built in a temporary sibling and renamed into place, and ``MANIFEST.json``
    records the arguments, so a later call with the same arguments returns at once.
    """
    import soundfile as sf

    from domains.lm.offline_corpus import english_sentences

    out = Path(out_dir)
    params = {"version": FORMAT_VERSION, "train": train_utterances, "valid": valid_utterances,
              "min_words": min_words, "max_words": max_words, "seed": seed}
    if manifest_params(out) == params:
        return out
    candidates = [s for s in (speakable(x, min_words, max_words) for x in (sentences or english_sentences)())
                  if s is not None]
    candidates = list(dict.fromkeys(candidates))  # distinct sentences, first-seen order
    needed = train_utterances + valid_utterances
    if len(candidates) < needed:
        raise DataSourceError(f"only {len(candidates)} speakable offline sentences of {min_words}-{max_words} "
                              f"words; {needed} utterances were asked for")
    rng = np.random.default_rng(seed)
    chosen = [candidates[i] for i in rng.choice(len(candidates), size=needed, replace=False)]
    synth = Synthesizer.get()
    speakers = [(f"{ACCENTS[k % len(ACCENTS)]}+{VARIANTS[k % len(VARIANTS)]}", 35 + (k * 7) % 40)
                for k in range(16)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    seconds = {TRAIN_SPLIT: 0.0, VALID_SPLIT: 0.0}
    try:
        transcripts: dict[Path, list[str]] = {}
        for n, text in enumerate(chosen):
            split = TRAIN_SPLIT if n < train_utterances else VALID_SPLIT
            speaker = int(rng.integers(len(speakers)))
            chapter = n // UTTERANCES_PER_CHAPTER
            rate = RATES[(chapter * 7 + speaker) % len(RATES)]
            voice, pitch = speakers[speaker]
            samples = synth.speak(text, voice, rate=rate, pitch=pitch)
            folder = tmp / split / str(100 + speaker) / str(1000 + chapter)
            folder.mkdir(parents=True, exist_ok=True)
            uid = f"{100 + speaker}-{1000 + chapter}-{n:04d}"
            sf.write(folder / f"{uid}.flac", samples, synth.sample_rate, subtype="PCM_16")
            transcripts.setdefault(folder / f"{100 + speaker}-{1000 + chapter}.trans.txt", []).append(
                f"{uid} {text.upper()}")
            seconds[split] += len(samples) / synth.sample_rate
        for path, lines in transcripts.items():
            path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        counts = {"train_utterances": train_utterances, "valid_utterances": valid_utterances,
                  "train_seconds": round(seconds[TRAIN_SPLIT], 3), "valid_seconds": round(seconds[VALID_SPLIT], 3),
                  "sample_rate": synth.sample_rate, "speakers": [f"{v} pitch {p}" for v, p in speakers]}
        write_manifest(tmp, params, counts)
        if out.exists():
            shutil.rmtree(out)  # written with other arguments
        try:
            os.replace(tmp, out)
        except OSError:
            if manifest_params(out) != params:  # not a concurrent writer that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
