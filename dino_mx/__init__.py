"""dino-mx: DINO-family self-supervised training of Vision Transformers on medical images."""

__version__ = "0.1.0"
