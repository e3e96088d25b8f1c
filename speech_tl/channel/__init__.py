"""Channel simulation: what a microphone, a room, a phone line and a codec do to speech.

Two kinds of channel, each a small JSON-able dict drawn once per utterance from a seeded random
stream, recorded in the manifest line, and rendered once when the audio is written:

- :mod:`.recording` (no ``kind`` key): a room, background noise, a microphone, a level and an
  MP3/Opus round trip, at 16 kHz (``prepare synth-asr --channel realistic``);
- :mod:`.phone` (``kind: phone``): a telephone call: talker-side noise or babble, the handset's
  band, level and clipping, 8 kHz, a real speech codec (:mod:`.codecs`: AMR-NB, GSM 06.10,
  G.711, Opus, Speex) and packet loss; the result is 8 kHz audio (``prepare channel``,
  ``prepare synth-asr --channel phone``).
"""

from .codecs import CODECS, CodecMissing, codec_round_trip_8k
from .phone import PHONE_RATE, apply_phone, draw_phone_channel
from .recording import (
    NUM_ROOMS,
    add_channel_noise,
    apply_channel,
    codec_round_trip,
    draw_channel,
    microphone,
    reverberate_room,
    room_impulse_response,
    room_rt60,
)

__all__ = ["CODECS", "NUM_ROOMS", "PHONE_RATE", "CodecMissing", "add_channel_noise", "apply_channel", "apply_phone",
           "codec_round_trip", "codec_round_trip_8k", "draw_channel", "draw_phone_channel", "microphone",
           "reverberate_room", "room_impulse_response", "room_rt60"]
