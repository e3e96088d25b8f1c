"""Multitask transfer: one shared pretrained encoder trained jointly for ASR (CTC) and speaker classification.

``speech-tl train multitask CONFIG.yaml`` -> :func:`.task.train_multitask`. After training, the run
folder holds two ordinary checkpoints that share the adapted encoder: ``asr/`` (CTC model) and
``speaker/`` (speaker embedder); ``speech-tl evaluate asr|speaker`` and the enrollment tool use
them as they would single-task runs.
"""
