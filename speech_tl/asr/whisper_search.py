"""Beam search over Whisper's decoder, as CTranslate2 runs it for faster-whisper (no timestamps, no sampling).

Written here rather than taken from transformers' ``generate`` because the decoder runs through
:func:`speech_tl.asr.seq2seq.run_decoder` (masked cross-attention for inputs shorter than 30 s, reorderable caches)
and the settings must be CTranslate2's to compare against it: the prompt forced, the checkpoint's suppress lists
(``suppress_ids`` every step, ``suppress_ids_begin`` at the first), every special token but end-of-text suppressed,
``beam_size`` hypotheses kept per utterance, finished ones scored by their summed log-probability divided by their
length (``length_penalty`` 1), and the search stopped for an utterance once ``beam_size * patience`` hypotheses
have finished (or at the decoder's 448 positions).
``beam_size`` 1 is greedy decoding.

Shapes: encoder output ``(B, T', D)``; beams are rows ``b * K + k`` of ``(B * K, t)`` token tensors.
"""

from __future__ import annotations

import torch

from .seq2seq import DecoderCache, Seq2SeqModel, run_decoder


@torch.no_grad()
def beam_search(model: Seq2SeqModel, encoded: torch.Tensor, enc_lengths: torch.Tensor, beam_size: int = 5,
                patience: float = 1.0, length_penalty: float = 1.0, max_length: int | None = None
                ) -> list[list[int]]:
    """Token ids (without prompt and end token) of the best hypothesis for each of the ``B`` encoder outputs."""
    tokens = model.tokens
    decoder = model.decoder
    B, K = encoded.shape[0], max(1, int(beam_size))
    device = encoded.device
    prompt = torch.tensor(model.prompt, device=device)
    limit = min(max_length or tokens.max_positions, decoder.embed_positions.weight.shape[0])
    suppress = torch.tensor(tokens.suppressed(), dtype=torch.long, device=device)
    suppress_begin = torch.tensor(tokens.suppressed_at_start(), dtype=torch.long, device=device)
    rows = torch.arange(B, device=device).repeat_interleave(K)
    cache = DecoderCache()
    logits = run_decoder(decoder, prompt.expand(B * K, -1), encoded.index_select(0, rows),
                         enc_lengths.index_select(0, rows), cache)[:, -1].float()
    seqs = prompt.expand(B * K, -1).clone()
    scores = torch.zeros(B, K, device=device)
    scores[:, 1:] = float("-inf")  # all beams start equal: only the first one expands at step 1
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    done = [False] * B
    need = max(1, round(K * patience))
    first = True
    V = logits.shape[-1]
    while True:
        logp = logits.log_softmax(-1)
        logp[:, suppress] = float("-inf")
        if first:
            logp[:, suppress_begin] = float("-inf")
        cand = (scores.reshape(-1, 1) + logp).reshape(B, K * V)
        top_scores, top_ids = cand.topk(min(2 * K, K * V), dim=-1)
        new_rows, new_tokens, new_scores = [], [], []
        for b in range(B):
            kept = 0
            for s, idx in zip(top_scores[b].tolist(), top_ids[b].tolist(), strict=True):
                beam, token = divmod(idx, V)
                if s == float("-inf"):
                    break
                row = b * K + beam
                if done[b]:
                    break
                if token == tokens.eot:
                    if len(finished[b]) < need:
                        gen = seqs[row, len(model.prompt):].tolist()
                        finished[b].append((s / max(1, len(gen) + 1) ** length_penalty, gen))
                    continue
                new_rows.append(row)
                new_tokens.append(token)
                new_scores.append(s)
                kept += 1
                if kept == K:
                    break
            while kept < K:  # an utterance that is done (or short of candidates) keeps dead beams
                new_rows.append(b * K)
                new_tokens.append(tokens.eot)
                new_scores.append(float("-inf"))
                kept += 1
        index = torch.tensor(new_rows, device=device)
        seqs = torch.cat([seqs.index_select(0, index), torch.tensor(new_tokens, device=device)[:, None]], 1)
        scores = torch.tensor(new_scores, device=device).reshape(B, K)
        first = False
        for b in range(B):
            done[b] = done[b] or len(finished[b]) >= need
        if all(done) or seqs.shape[1] >= limit:
            break
        cache.select(index, cross=False)  # beams move within their utterance: its cross-attention rows are equal
        logits = run_decoder(decoder, seqs[:, -1:], None, None, cache)[:, -1].float()
    out = []
    for b in range(B):
        if finished[b]:
            out.append(max(finished[b], key=lambda f: f[0])[1])
        else:  # the position limit came first: the best running hypothesis
            k = int(scores[b].argmax())
            out.append(seqs[b * K + k, len(model.prompt):].tolist())
    return out
