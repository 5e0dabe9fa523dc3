"""The `imgcls` command: predict with a trained checkpoint, check a params.yaml."""
