"""Where benchmarks write their throw-away files."""

from pathlib import Path


def scratch_dir() -> Path:
    """Work under the repository's git-ignored data/, where the pipeline itself writes, not /tmp,
    whose file-creation cost on some machines is ten times that of the project's own disk."""
    folder = Path(__file__).resolve().parents[1] / "data" / "benchmarks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
