"""Training: datasets built from volumes, one generic trainer, and per-method recipes."""
