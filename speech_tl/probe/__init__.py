"""Layer probes: which layers of a pretrained backbone to freeze, measured before any fine-tuning.

The whole backbone is frozen; a light head is fitted on the output of each depth ``k`` (the
frontend alone is depth 0; depth ``k`` is what the trainable part would see with the bottom
``k`` layers frozen; the top depth includes the backbone's final norm):

- ASR (:mod:`.asr`): a small CTC character head per depth, trained jointly on cached features;
  per-depth CER and WER on held-out utterances.
- Speaker (:mod:`.speaker`): statistics pooling and an LDA projection fitted on training
  speakers; per-depth cosine EER on held-out speakers (and the EER without LDA).

:func:`.recommend.recommend_depth` turns the per-depth errors into a freeze depth. Results go to
``probe.json`` (``task: "probe"``), which ``speech-tl report`` draws as a curve.
"""
