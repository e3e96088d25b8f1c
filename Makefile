# speech-tl: two set-up commands, `make demo` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMPS := .make
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages: TTS voices (mbrola and its voices, pico are in contrib/non-free), sox, the
# trans-de-en dictionary whose German sentences the synthetic corpus speaks, fortunes-de (German text for the
# decoder's word LM); Chromium renders the HTML
# report in its test; ffmpeg decodes m4a/aac/mp4 audio (VoxCeleb2, phone recordings) and the MP3s that
# `manifest to-kaldi` converts for Kaldi.
MBROLA_VOICES := af1 ar1 ar2 br1 br2 br3 br4 bz1 ca1 ca2 cn1 cr1 cz1 cz2 de1 de2 de3 de4 de5 de6 de7 de8 \
	ee1 en1 es1 es2 es3 es4 fr1 fr2 fr3 fr4 fr5 fr6 fr7 gr1 gr2 hb1 hb2 hn1 hu1 ic1 id1 in1 in2 ir1 it1 it2 \
	it3 it4 jp1 jp2 jp3 la1 lt1 lt2 ma1 mx1 mx2 nl1 nl2 nl3 nz1 pl1 pt1 ro1 sw1 sw2 tl1 tr1 tr2 us1 us2 us3 vz1
APT_PACKAGES := espeak-ng sox mbrola $(addprefix mbrola-,$(MBROLA_VOICES)) libttspico-utils trans-de-en fortunes-de \
	chromium fonts-dejavu-core ffmpeg

.PHONY: help demo test lint system-deps venv clean

help:
	@echo "make demo   install system packages and .venv, then run the main job on the built-in data"
	@echo "make test   install what the tests need, then run ruff and the test suite"

system-deps: $(STAMPS)/system-deps
$(STAMPS)/system-deps: Makefile
	@mkdir -p $(STAMPS)
	@if dpkg-query -W -f='$${Status}\n' $(APT_PACKAGES) 2>/dev/null | grep -c 'install ok installed' \
		| grep -qx "$(words $(APT_PACKAGES))"; then \
		echo "system packages: all $(words $(APT_PACKAGES)) installed"; \
	else \
		$(SUDO) bash .ci/apt-contrib-non-free.sh && \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) \
			> $(STAMPS)/apt.log 2>&1 || { tail -20 $(STAMPS)/apt.log; exit 1; }; \
	fi
	@touch $@

venv: $(STAMPS)/venv
$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# pip's warnings about missing local index folders are noise; grep finding nothing is not an error
	$(PY) -m pip install -q --upgrade "pip>=24" 2>&1 | (grep -v '^WARNING: Location' || true)
	set -o pipefail; $(PY) -m pip install -q -e '.[dev]' 2>&1 | (grep -v '^WARNING: Location' || true)
	@# GE2E's pretrained weights (resemblyzer's pretrained.pt) into the user cache, once: resemblyzer is no
	@# dependency, because its webrtcvad requirement only installs with a C compiler
	$(PY) -m speech_tl.backbones.ge2e fetch
	@# resemblyzer itself, only for the test and the benchmark that compare with it: beside the venv, with the
	@# wheel-only webrtcvad-wheels
	rm -rf $(STAMPS)/setuptools80
	set -o pipefail; $(PY) -m pip install -q --upgrade --no-deps --target $(STAMPS)/resemblyzer \
		resemblyzer==0.1.4 webrtcvad-wheels 2>&1 | (grep -v '^WARNING: Location' || true)
	@touch $@

lint: venv
	$(VENV)/bin/ruff check speech_tl tests benchmarks

test: system-deps venv lint
	set -o pipefail; $(PY) -m pip check 2>&1 | (grep -v '^WARNING: Location' || true)
	$(PY) -m pytest -q

demo: system-deps venv
	recipes/demo/run.sh

clean:
	rm -rf $(STAMPS) $(VENV) *.egg-info
