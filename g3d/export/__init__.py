"""``g3d export``: the dataset in formats other researchers load in one line (Hugging Face datasets,
nerfstudio / instant-ngp, COCO, WebDataset), all from one row source (:mod:`g3d.export.rows`)."""
