"""Models that leave speech-tl: ONNX export of ASR and speaker models, and running the exported folders.

``speech-tl export onnx CHECKPOINT_DIR --out DIR`` writes ``DIR/model.onnx`` and what it needs beside it
(:mod:`.onnx`); ``speech-tl transcribe DIR``, ``evaluate asr DIR``, ``enroll/identify --model DIR`` run such a
folder through ONNX Runtime (:mod:`.runtime`), with the same batching, windowing and decoding as the torch model.
"""

EXPORT_FILE = "export.json"  # what an exported folder says about itself (kind, inputs, settings, provenance)
ONNX_FILE = "model.onnx"
