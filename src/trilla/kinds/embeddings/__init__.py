"""The embeddings kind: AudioSet's released formats (audioset.py), read as labelled data by two packed sources
(data.py), streamed when too large for memory (stream.py), and the kind itself (kind.py)."""
