"""The data phase: sources, image preparation, splits, packed arrays and augmentation; never imports torch."""
