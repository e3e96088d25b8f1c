"""Whisper's tokenizer for training and decoding: byte-level BPE from the model's own ``tokenizer.json``.

Read with the ``tokenizers`` library (what transformers' fast tokenizers run on). The special tokens are found by
name, so one class serves multilingual checkpoints (``<|startoftranscript|> <|de|> <|transcribe|>
<|notimestamps|>``) and English-only ones (``<|startoftranscript|> <|notimestamps|>``: no language or task token;
their BPE still writes German as it is, bytes where it must). Text is encoded with a leading space, as Whisper's
transcripts begin.

Shapes: :meth:`WhisperTokens.prompt` ``[P]`` ids; :meth:`encode` ``[L]`` ids without specials.
"""

from __future__ import annotations

from ..errors import InputError

MAX_TARGET_POSITIONS = 448  # Whisper's decoder position table


class TranscriptTooLongError(InputError):
    """A transcript whose tokens do not fit Whisper's decoder (448 positions, prompt included)."""


class WhisperTokens:
    def __init__(self, tokenizer_json: str, vocab_size: int, generation: dict | None = None,
                 max_positions: int = MAX_TARGET_POSITIONS):
        from tokenizers import Tokenizer

        self.tokenizer_json = tokenizer_json
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.vocab_size = vocab_size  # the model's output size (may exceed the tokenizer's: timestamp tokens)
        self.max_positions = max_positions
        self.generation = dict(generation or {})
        tid = self.tokenizer.token_to_id
        self.eot, self.sot = tid("<|endoftext|>"), tid("<|startoftranscript|>")
        self.transcribe, self.notimestamps = tid("<|transcribe|>"), tid("<|notimestamps|>")
        if None in (self.eot, self.sot, self.notimestamps):
            raise InputError("tokenizer.json lacks Whisper's special tokens (<|endoftext|>, <|startoftranscript|>, "
                             "<|notimestamps|>): not a Whisper tokenizer")
        # multilingual checkpoints have one more token (the vocabulary is shifted by <|de|>... after eot):
        # 51865 vs 51864 outputs; an English-only model never saw a language token
        self.multilingual = vocab_size >= 51865 and self.transcribe is not None
        self.languages = {}
        if self.multilingual:
            for token, i in self.tokenizer.get_vocab(with_added_tokens=True).items():
                code = token[2:-2] if token.startswith("<|") and token.endswith("|>") else ""
                if self.sot < i < self.transcribe and code and code not in ("translate",):
                    self.languages[code] = i

    def language_token(self, language: str | None) -> int | None:
        """The id of ``<|language|>`` (None for an English-only checkpoint, which has none)."""
        if not self.multilingual or not language:
            return None
        if language not in self.languages:
            raise InputError(f"language {language!r}: this Whisper checkpoint has no <|{language}|> token; it knows "
                             f"{len(self.languages)} languages ({', '.join(sorted(self.languages)[:30])}, ...). Use a "
                             "two-letter code such as 'de', or an English-only checkpoint without a language token")
        return self.languages[language]

    def prompt(self, language: str | None) -> list[int]:
        """The decoder's start: sot, language and task (multilingual), no-timestamps."""
        lang = self.language_token(language)
        if lang is None:
            return [self.sot, self.notimestamps]
        return [self.sot, lang, self.transcribe, self.notimestamps]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids

    def target(self, text: str, language: str | None, what: str = "transcript") -> tuple[list[int], list[int]]:
        """Teacher forcing: decoder input ``prompt + tokens`` and labels ``tokens + eot`` (same length L).

        A transcript whose tokens do not fit the decoder's positions is an error naming ``what`` (never cut).
        """
        prompt, tokens = self.prompt(language), self.encode(text)
        if len(prompt) + len(tokens) + 1 > self.max_positions:
            raise TranscriptTooLongError(f"{what}: {len(tokens)} tokens plus the {len(prompt)}-token prompt and "
                                         f"end token exceed the decoder's {self.max_positions} positions; split the "
                                         "utterance into shorter segments or remove it (data.max_duration helps)")
        inputs = prompt + tokens
        labels = [-100] * (len(prompt) - 1) + tokens + [self.eot]
        return inputs, labels

    def decode(self, ids: list[int]) -> str:
        """Text of generated ids; special tokens (ids from eot on) are left out."""
        return self.tokenizer.decode([i for i in ids if i < self.eot]).strip()

    def suppressed(self) -> list[int]:
        """Ids never generated: the checkpoint's suppress list, and every special token but eot (sot, languages,
        tasks, no-timestamps, timestamps: decoding runs without timestamps)."""
        ids = set(self.generation.get("suppress_ids", []))
        ids.update(range(self.eot + 1, self.vocab_size))
        return sorted(i for i in ids if 0 <= i < self.vocab_size)

    def suppressed_at_start(self) -> list[int]:
        """Ids not allowed as the first generated token (a blank, end of text)."""
        return sorted(set(self.generation.get("suppress_ids_begin", [])) | {self.eot})
