"""``g3d export``: the dataset in formats other researchers load in one line (Hugging Face so far)."""
