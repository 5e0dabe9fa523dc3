"""The small core every stage runs: params schema, stage CLI, errors, atomic writes, CPU-kernel pinning."""
