"""Training: batches on the device, the step loop, fit, checkpoints and the recipe that rebuilds a model."""
