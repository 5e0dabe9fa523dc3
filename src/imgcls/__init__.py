"""imgcls: a reproducible image-classification pipeline on DVC."""
