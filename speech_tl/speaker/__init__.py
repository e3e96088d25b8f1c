"""Speaker identification and verification: embeddings, AAM-softmax adaptation, trials, enrollment."""
