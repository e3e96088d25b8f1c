#!/usr/bin/env bash
# The README's pip-only route, checked in a fresh virtual environment outside the repository's .venv:
# a torch release installed first (TORCH, default 2.14.0) must be kept by `pip install -e '.[dev]'`, `pip check`
# must be clean, torchaudio must load beside that torch, and the tests given as arguments must pass.
# Not part of .ci/run: it downloads torch and its CUDA libraries (gigabytes).
#
#   .ci/pip-only.sh                                   # a quick subset of the tests
#   TORCH=2.11.0 VENV=/tmp/st-211 .ci/pip-only.sh tests/backbones tests/speaker
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-/tmp/speech-tl-pip-only}
TORCH=${TORCH:-2.14.0}
PYTHON=${PYTHON:-python3}
pip_q() { "$VENV/bin/python" -m pip "$@" 2>&1 | (grep -v '^WARNING: Location' || true); }

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
pip_q install -q --upgrade "pip>=24"
pip_q install -q "torch==$TORCH"
pip_q install -q -e '.[dev]'
got=$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')
[ "$got" = "$TORCH" ] || { echo "FAIL: pip replaced torch $TORCH by $got"; exit 1; }
pip_q check
"$VENV/bin/python" - <<'EOF'
import torch, torchaudio
from torchaudio.functional import resample
from torchaudio.models.decoder import ctc_decoder  # noqa: F401  (needs flashlight-text)
y = resample(torch.randn(1, 8000), 8000, 16000)
assert y.shape == (1, 16000)
print(f"torch {torch.__version__}, torchaudio {torchaudio.__version__}: resample and ctc_decoder load")
EOF
"$VENV/bin/python" -m pip list 2>/dev/null | grep -iE '^(torch|torchaudio|transformers|numpy|scipy|speechbrain) ' || true
if [ $# -eq 0 ]; then
  set -- tests/test_packaging.py tests/test_audio.py tests/asr tests/backbones -k "not slow"
fi
"$VENV/bin/python" -m pytest -q -ra -p no:cacheprovider "$@"
