"""Models that leave speech-tl: ONNX export of ASR and speaker models (:mod:`.onnx`), and Whisper decoder models as
transformers (:mod:`.hf`) and CTranslate2 / faster-whisper (:mod:`.ct2`) folders.

``speech-tl export onnx|hf|ct2 CHECKPOINT_DIR --out DIR`` writes DIR; :mod:`speech_tl.runtime` runs such folders
(``speech-tl transcribe DIR``, ``evaluate asr DIR``, ``enroll/identify --model DIR``). The exporters import the tasks;
the tasks never import the exporters.
"""

from ..runtime import CT2_INFO_FILE, EXPORT_FILE, ONNX_FILE, ONNX_FORMAT, ONNX_VERSION  # noqa: F401
