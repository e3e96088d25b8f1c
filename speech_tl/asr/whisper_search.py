"""Beam search over Whisper's decoder, as CTranslate2 runs it for faster-whisper (no timestamps, no sampling).

Written here rather than taken from transformers' ``generate`` because the decoder runs through
:func:`speech_tl.asr.seq2seq.run_decoder` (masked cross-attention for inputs shorter than 30 s, reorderable caches)
and the search must be CTranslate2's to compare against it (its ``BeamSearch::search``):

- the prompt is forced; suppressed tokens (the checkpoint's ``suppress_ids`` every step, ``suppress_ids_begin`` at the
  first, every special token but end-of-text) are masked in the logits *before* the log-softmax, so the remaining
  tokens' probabilities are renormalised;
- each step takes the ``2 * beam_size`` best continuations of all beams; an end-of-text among the first
  ``beam_size`` of them finishes a hypothesis (its summed log-probability is its score) and its place in the beam goes
  to the next candidate from the second half that does not end; an end-of-text further down is ignored;
- an utterance is done once ``round(beam_size * patience)`` hypotheses have finished (CTranslate2 exits on the top
  beam alone only without a length penalty; faster-whisper uses length penalty 1), or at the length limit, where
  the running beams are taken as they are;
- the best hypothesis is the one with the highest score divided by its length (without the end token) to the power
  ``length_penalty``.

``beam_size`` 1 is greedy decoding. Shapes: encoder output ``(B, T', D)``; beams are rows ``b * K + k`` of ``(B * K,
t)`` token tensors.
"""

from __future__ import annotations

import torch

from .seq2seq import DecoderCache, Seq2SeqModel, run_decoder

MAX_NEW_TOKENS = 224  # half the decoder's 448 positions, as OpenAI's Whisper and faster-whisper's CTranslate2 cap


@torch.no_grad()
def beam_search(model: Seq2SeqModel, encoded: torch.Tensor, enc_lengths: torch.Tensor, beam_size: int = 5,
                patience: float = 1.0, length_penalty: float = 1.0, max_new_tokens: int | None = None
                ) -> list[list[int]]:
    """Token ids (without prompt and end token) of the best hypothesis for each of the ``B`` encoder outputs."""
    tokens = model.tokens
    decoder = model.decoder
    B, K = encoded.shape[0], max(1, int(beam_size))
    C = 2 * K
    device = encoded.device
    prompt = torch.tensor(model.prompt, device=device)
    positions = decoder.embed_positions.weight.shape[0]
    new_max = min(max_new_tokens or MAX_NEW_TOKENS, positions - len(model.prompt))
    suppress = torch.tensor(tokens.suppressed(), dtype=torch.long, device=device)
    suppress_begin = torch.tensor(tokens.suppressed_at_start(), dtype=torch.long, device=device)
    need = max(1, round(K * patience))
    rows = torch.arange(B, device=device).repeat_interleave(K)
    cache = DecoderCache()
    logits = run_decoder(decoder, prompt.expand(B * K, -1), encoded.index_select(0, rows),
                         enc_lengths.index_select(0, rows), cache)[:, -1].float()
    generated = torch.empty(B * K, 0, dtype=torch.long, device=device)
    scores = torch.zeros(B, K, device=device)
    scores[:, 1:] = float("-inf")  # all beams start equal: only the first one expands at the first step
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    done = [False] * B
    for step in range(new_max):
        logits[:, suppress] = float("-inf")
        if step == 0:
            logits[:, suppress_begin] = float("-inf")
        logp = logits.log_softmax(-1)
        V = logp.shape[-1]
        cand = (scores.reshape(-1, 1) + logp).reshape(B, K * V)
        top_scores, top_ids = cand.topk(C, dim=-1)
        top_scores, top_ids = top_scores.tolist(), top_ids.tolist()
        last = step + 1 == new_max
        new_rows, new_tokens, new_scores = [], [], []
        for b in range(B):
            if done[b]:  # finished utterances keep dead beams until the whole batch is done
                new_rows += [b * K] * K
                new_tokens += [tokens.eot] * K
                new_scores += [float("-inf")] * K
                continue
            secondary = K
            for k in range(K):
                j = k
                beam, token = divmod(top_ids[b][k], V)
                if top_scores[b][k] == float("-inf"):
                    pass  # fewer live candidates than beams (first steps): keep the dead slot
                elif token == tokens.eot or last:
                    gen = generated[b * K + beam].tolist() + ([] if token == tokens.eot else [token])
                    finished[b].append((top_scores[b][k], gen))
                    j = next((i for i in range(secondary, C) if top_ids[b][i] % V != tokens.eot), None)
                    if j is None:
                        j = k  # no candidate to take its place: the slot dies below
                    else:
                        secondary = j + 1
                beam, token = divmod(top_ids[b][j], V)
                dead = token == tokens.eot or top_scores[b][j] == float("-inf")
                new_rows.append(b * K + beam)
                new_tokens.append(token)
                new_scores.append(float("-inf") if dead else top_scores[b][j])
            done[b] = last or len(finished[b]) >= need
        if all(done):
            break
        index = torch.tensor(new_rows, device=device)
        generated = torch.cat([generated.index_select(0, index), torch.tensor(new_tokens, device=device)[:, None]], 1)
        scores = torch.tensor(new_scores, device=device).reshape(B, K)
        cache.select(index, cross=False)  # beams move within their utterance: its cross-attention rows are equal
        logits = run_decoder(decoder, generated[:, -1:], None, None, cache)[:, -1].float()
    out = []
    for b in range(B):
        if finished[b]:
            out.append(max(finished[b], key=lambda f: f[0] / max(1, len(f[1])) ** length_penalty)[1])
        else:  # cannot happen (the last step finishes every beam); kept for safety
            out.append(generated[b * K + int(scores[b].argmax())].tolist())
    return out
