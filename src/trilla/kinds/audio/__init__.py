"""The audio kind: sounds decoded and resampled (decode.py), turned into log-mel spectrograms (spectrogram.py),
augmented on the spectrogram (augment.py, its schema in augment_config.py), and the kind itself (kind.py)."""
