"""The note tokenizer: a byte-pair-encoding subword model (HF `tokenizers`) trained on the notes.

It owns normalisation (NFKC, lower case, accents kept), pre-tokenisation, the special ids, and the
character offsets into the ORIGINAL text that highlights are built from. No torch here.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import (
    Encoding,
    Tokenizer,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from model.batching import pad_notes

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
EOS_TOKEN = "<eos>"  # document separator for language-model pretraining
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, EOS_TOKEN)  # ids 0, 1, 2 by contract

TOKENIZER_FILE = "tokenizer.json"

# Characters that always get a vocabulary entry even when the training notes lack them, so a Spanish
# or French accent unseen in an English corpus becomes its own token instead of <unk>. These are
# post-normalisation (lower-case) characters: ASCII and the Latin-1 letters.
_BASE_ALPHABET = sorted(
    set(string.ascii_lowercase + string.digits + string.punctuation)
    | {chr(c) for c in range(0xDF, 0x100) if chr(c).isalpha()}
)


@dataclass(frozen=True)
class TokenizedNote:
    """One note as the network reads it.

    ids: int64 (T,); offsets: int64 (T, 2), [start, end) character offsets into the original text.
    """

    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


# Names of (pad, unk, eos) in our own vocabularies and in common Hugging Face ones.
_SPECIAL_NAMES: tuple[tuple[str, ...], ...] = (
    (PAD_TOKEN, "[PAD]"),
    (UNK_TOKEN, "[UNK]"),
    (EOS_TOKEN, "</s>", "[SEP]"),
)


def _special_ids(tokenizer: Tokenizer) -> tuple[int, int, int]:
    """(pad, unk, eos) ids; our own tokenizers have them at 0, 1, 2 by contract."""
    found: list[int] = []
    for names in _SPECIAL_NAMES:
        ids = [tokenizer.token_to_id(name) for name in names]
        token_id = next((i for i in ids if i is not None), None)
        if token_id is None:
            raise ValueError(
                f"tokenizer has none of the special tokens {names}; train one with "
                "NoteTokenizer.train or load a Hugging Face one with from_huggingface"
            )
        found.append(int(token_id))
    return found[0], found[1], found[2]


def _build_untrained() -> Tokenizer:
    # BPE without a continuing-subword prefix: with "##" the HF trainer numbers the prefixed
    # tokens in hash-map order, which breaks ties differently on every run (non-deterministic
    # vocabularies). Plain BPE merges are ordered by (count, pair ids) and reproduce exactly.
    tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN, fuse_unk=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    # Whitespace, then every punctuation character on its own, then digit runs apart from letters
    # ("500mg" -> "500", "mg"): offsets fall on word parts and units stay separate tokens.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=False),
        ]
    )
    return tokenizer


def _extend_over_combining_marks(text: str, offsets: np.ndarray) -> np.ndarray:
    """Let a token's span cover the combining marks NFKC folded into its last character.

    HF aligns a composed character ("e" + U+0301 -> "é") to the first original character only,
    so without this the highlight would cut the accent off. offsets: (T, 2), returned copied.
    """
    fixed = offsets.copy()
    n_tokens = fixed.shape[0]
    for index in range(n_tokens):
        limit = int(fixed[index + 1, 0]) if index + 1 < n_tokens else len(text)
        end = int(fixed[index, 1])
        while end < len(text) and end < limit and unicodedata.combining(text[end]):
            end += 1
        fixed[index, 1] = end
    return fixed


class NoteTokenizer:
    """Subword tokenizer for clinical notes with offsets into the original text."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._special_ids = _special_ids(tokenizer)

    @classmethod
    def from_huggingface(cls, model_dir: str | Path) -> NoteTokenizer:
        """The fast tokenizer (`tokenizer.json`) of a local Hugging Face model directory.

        Its post-processor, padding and truncation are switched off: the encoder reads the note
        in chunks of ids as they come, and offsets must map every id back to the text. The
        special ids are the model's own (e.g. RoBERTa's `<pad>` is 1), found by name.
        """
        source = Path(model_dir) / TOKENIZER_FILE
        if not source.is_file():
            raise FileNotFoundError(
                f"{source} not found: a transformers backbone needs its fast tokenizer file "
                "(save it with AutoTokenizer.from_pretrained(...).save_pretrained(dir))"
            )
        tokenizer = Tokenizer.from_file(str(source))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        tokenizer.post_processor = processors.Sequence([])
        return cls(tokenizer)

    # -- building and files ---------------------------------------------------------------------

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> NoteTokenizer:
        """Learn a BPE vocabulary of at most `vocab_size` entries (specials and alphabet included).

        Deterministic: the same texts in the same order give the same vocabulary and merges.
        """
        if vocab_size < len(SPECIAL_TOKENS) + 1:
            raise ValueError(f"vocab_size must be at least {len(SPECIAL_TOKENS) + 1}")
        tokenizer = _build_untrained()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=_BASE_ALPHABET,
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        return cls(tokenizer)

    def save(self, path: str | Path) -> Path:
        """Write the one JSON file; a directory gets `tokenizer.json` inside it."""
        target = Path(path)
        if target.is_dir():
            target = target / TOKENIZER_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self._tokenizer.to_str(pretty=False), encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | Path) -> NoteTokenizer:
        source = Path(path)
        if source.is_dir():
            source = source / TOKENIZER_FILE
        if not source.is_file():
            raise FileNotFoundError(f"tokenizer file {source} not found")
        return cls(Tokenizer.from_file(str(source)))

    # -- vocabulary -----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    @property
    def pad_id(self) -> int:
        return self._special_ids[0]

    @property
    def unk_id(self) -> int:
        return self._special_ids[1]

    @property
    def eos_id(self) -> int:
        return self._special_ids[2]

    def id_to_token(self, token_id: int) -> str:
        token = self._tokenizer.id_to_token(token_id)
        if token is None:
            raise IndexError(f"token id {token_id} outside the vocabulary (size {self.vocab_size})")
        return str(token)

    def token_to_id(self, token: str) -> int | None:
        token_id = self._tokenizer.token_to_id(token)
        return None if token_id is None else int(token_id)

    # -- encoding -------------------------------------------------------------------------------

    @staticmethod
    def _to_note(text: str, encoding: Encoding, max_tokens: int | None) -> TokenizedNote:
        ids = np.asarray(encoding.ids, dtype=np.int64)  # (T,)
        offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)  # (T, 2)
        if max_tokens is not None:
            ids = ids[:max_tokens]
            offsets = offsets[:max_tokens]
        # NFC-normalised text has no combining sequences NFKC could compose: skip the slow path.
        if not unicodedata.is_normalized("NFC", text):
            offsets = _extend_over_combining_marks(text, offsets)
        return TokenizedNote(ids=ids, offsets=offsets)

    def encode(self, text: str, max_tokens: int | None = None) -> TokenizedNote:
        return self._to_note(text, self._tokenizer.encode(text), max_tokens)

    def encode_batch(
        self, texts: Sequence[str], max_tokens: int | None = None
    ) -> list[TokenizedNote]:
        """Encode in parallel (Rust threads); each note truncated to its first `max_tokens`."""
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        # Truncation is applied here, not with enable_truncation: that would mutate the shared
        # HF tokenizer, which concurrent callers (service threads) must never do.
        encodings = self._tokenizer.encode_batch(list(texts))
        return [
            self._to_note(text, encoding, max_tokens)
            for text, encoding in zip(texts, encodings, strict=True)
        ]

    def pad_batch(self, notes: Sequence[TokenizedNote]) -> tuple[np.ndarray, np.ndarray]:
        """Right-pad to the longest note: (input_ids int64 (B, T), attention_mask int64 (B, T)).

        T is at least 1, so a batch of empty notes still has a valid (all-masked) shape.
        """
        return pad_notes([note.ids for note in notes], self.pad_id)
