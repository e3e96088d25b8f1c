"""Speech recognition on top of a CTC character head: decoding and n-gram language models."""
