"""Models by name: `names.MODEL_NAMES` (no torch), `registry.build_model`, and the helpers to inspect them."""
