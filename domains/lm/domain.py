"""The language-modeling domain (Hestness et al. 2017, Billion Word): word and character LMs, each as an LSTM
(``word``, ``char``) and as a recurrent highway network (``word_rhn``, ``char_rhn``).

Each architecture × token kind is its own family, because a family is one fitted learning curve: the best
configuration per shard is taken over a family's widths and hyperparameters, so an architecture switch inside one
family would mix two models' curves into one row of the fitted table.

Learning-curve sizes are counted in the unit the model predicts: words including one ``</s>`` per sentence
for the word family, characters including one newline per sentence for the char family.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from domains.base import FamilyInfo, SourceModel
from domains.cache import cache_key, file_stamp, load_or_build_folder
from domains.lm.data import META_FILE, LMData, load_lm_data, resolve_files
from domains.lm.models import RecurrentLM, build_model
from domains.lm.offline_corpus import TRAIN_GLOB, VALID_GLOB, write_corpus
from domains.lm.rhn import RecurrentHighwayLM
from domains.lm.task import HPARAMS, LMHParams, LMTask, RecurrentLMHParams, RHNHParams
from domains.lm.tokenize_corpus import Settings, tokenize_corpus
from domains.model_domain import ModelDomain, naming_source

CACHE_VERSION = 2  # bump when tokenization or the cached layout changes (2: memory-mapped, shuffle-ordered arrays)
# ``train: builtin:offline-english`` = real English that ships with the OS and Python (offline_corpus), written
# once into the cache in the Billion Word layout; its held-out file is the validation set unless ``valid`` is set.
OFFLINE_ENGLISH = "builtin:offline-english"


class LMSource(SourceModel):
    """The spec's ``data`` section for ``lm``: Billion-Word-layout text (one sentence per line)."""

    train: str  # a file, a directory or a glob ("**" allowed) of UTF-8 training text, or OFFLINE_ENGLISH
    valid: str | None = None  # same forms; None = hold out ``valid_fraction`` of the training sentences
    valid_fraction: float = Field(0.05, gt=0.0, lt=1.0)
    vocab_size: int = Field(10000, ge=3)  # word vocabulary incl. <unk> and </s>
    min_char_count: int = Field(10, ge=1)  # rarer characters become the unknown character
    lowercase: bool = False
    shuffle_seed: int = 0  # the one shuffle that every nested shard is a prefix of
    max_sentences: int | None = Field(None, ge=1)  # keep a random subset of the training split
    max_valid_words: int | None = Field(50000, ge=2)  # validation stream caps, for evaluation speed
    max_valid_chars: int | None = Field(200000, ge=2)
    # tokenizer processes; None: one per CPU for a corpus over 16 MB, else 1. Not part of the cache key.
    prepare_workers: int | None = Field(None, ge=1)


TOKEN_METRICS: Mapping[str, tuple[str, Mapping[str, str], str]] = {
    "word": ("val_xent", {"val_xent": "nats/word", "val_ppl": "perplexity per word"}, "words"),
    "char": ("val_bpc", {"val_bpc": "bits/char", "val_ppl": "perplexity per char"}, "characters"),
}


def lm_family(tokens: str, model: str) -> FamilyInfo:
    """A family's metrics and size unit follow its token stream (nats/word and words, or bits/char and characters)."""
    metric, metrics, unit = TOKEN_METRICS[tokens]
    level = "word" if tokens == "word" else "character"
    return FamilyInfo(metric=metric, metrics=metrics, description=f"{level}-level {model} LM", size_unit=unit)


class LMDomain(ModelDomain, name="lm", size_unit="words", source=LMSource, hparams=HPARAMS, task=LMTask):
    """Word LM (nats/word) and char LM (bits/char) learning curves on nested shards of a text corpus."""

    families: ClassVar[Mapping[str, FamilyInfo]] = {
        "word": lm_family("word", "LSTM"),
        "char": lm_family("char", "LSTM"),
        "word_rhn": lm_family("word", "recurrent highway network"),
        "char_rhn": lm_family("char", "recurrent highway network"),
    }

    def prepare(self, source: BaseModel | Mapping[str, Any], cache_dir: Path) -> LMData:
        """Read and tokenize once, file by file in parallel processes, into memory-mapped arrays in
        ``cache_dir/<key>/``, where the key covers the settings and the name, size and mtime of every input file
        (so edited data is re-read, unchanged data never is). The returned ``LMData`` pickles as that folder's
        path: trials map the arrays themselves instead of receiving them through Ray's object store."""
        src: LMSource = self.parse_source(source)
        if src.train == OFFLINE_ENGLISH:
            corpus = write_corpus(Path(cache_dir) / "offline-english")
            src = src.model_copy(update={"train": str(corpus / TRAIN_GLOB),
                                         "valid": src.valid or str(corpus / VALID_GLOB)})
        train_files = resolve_files(src.train, "train")
        valid_files = resolve_files(src.valid, "valid") if src.valid is not None else []
        settings = src.model_dump(mode="json", exclude={"prepare_workers"})
        key = cache_key(CACHE_VERSION, settings, train=[file_stamp(p) for p in train_files],
                        valid=[file_stamp(p) for p in valid_files])
        folder = Path(cache_dir) / key

        def build(tmp: Path) -> None:
            tokenizer = Settings(**{k: settings[k] for k in Settings.__dataclass_fields__})
            with naming_source(src.train):
                tokenize_corpus(train_files, valid_files, tmp, tokenizer, {"key": key}, src.prepare_workers)

        return load_or_build_folder(folder, load_lm_data, build, META_FILE)

    def train_size(self, prepared: LMData, fraction: float, family: str) -> float:
        return float(prepared.shard_tokens(fraction, self.hparams_for(family).tokens))

    def examples_per_step(self, family: str, hparams: Mapping[str, Any]) -> float:
        hp = self.hparams_for(family).resolve(hparams)
        return float(hp.batch_size * hp.bptt)  # every reader takes bptt tokens of the stream per step

    def planning_data(self, source: BaseModel, hints: Mapping[str, Any]) -> Any:
        """Vocabulary sizes: the word one from the data section, the character one from ``hints["char_vocab"]``
        (it depends on the text; 256 assumed)."""
        src: LMSource = self.parse_source(source)
        sizes = {"word": src.vocab_size, "char": int(hints.get("char_vocab", 256))}
        return SimpleNamespace(vocab_size=lambda tokens: sizes[tokens])

    def build_model(self, prepared: LMData, width: int,
                    hp: RecurrentLMHParams) -> RecurrentLM | RecurrentHighwayLM:
        vocab = prepared.vocab_size(hp.tokens)
        if isinstance(hp, RHNHParams):
            return RecurrentHighwayLM(vocab, width, hp.depth, dropout=hp.dropout, gate_bias=hp.gate_bias,
                                      state_dropout=hp.state_dropout, tie_weights=hp.tie_weights,
                                      softmax_cutoffs=hp.cutoffs, softmax_div=hp.softmax_div)
        assert isinstance(hp, LMHParams)
        return build_model(hp.family, vocab, width, layers=hp.layers, dropout=hp.dropout,
                           tie_weights=hp.tie_weights, softmax_cutoffs=hp.cutoffs, softmax_div=hp.softmax_div)
