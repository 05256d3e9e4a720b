"""The image kind: pictures decoded (decode.py), resized and padded into the store, augmented with torchvision v2
(augment.py, its schema in augment_config.py), and the kind itself (kind.py)."""
