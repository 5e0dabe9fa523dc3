"""DVC stage `train@<model>`: train one model from `train` defaults overlaid with `models.<name>`."""

from pathlib import Path

import torch
from dvclive import Live

from imgcls.checkpoint import file_digest, run_fingerprint, source_digest
from imgcls.cli import stage_main, stage_parser
from imgcls.data import to_device
from imgcls.models import build_model
from imgcls.params import resolve_model
from imgcls.splits import load_split, read_classes
from imgcls.training import fit, select_device


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--model", required=True, help="a key of params.yaml's models:")
    parser.add_argument("--processed", type=Path, required=True, help="the split stage's folder (val split, classes)")
    parser.add_argument("--train-data", type=Path, required=True, help="packed train arrays (the augment stage's output)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder: best.pt, last.pt")
    parser.add_argument("--live", type=Path, required=True, help="dvclive folder for per-epoch metrics and plots")
    args = parser.parse_args()
    settings = resolve_model(args.params, args.model)
    train = settings.train

    classes = read_classes(args.processed / "classes.json")
    train_split = load_split(args.train_data, mmap=False)
    val_split = load_split(args.processed / "val", mmap=False)
    device = select_device(train.device)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(train.seed)  # weight initialisation
    model = build_model(settings.arch, len(classes), train_split.images.shape[1], **settings.options)
    model = model.to(device, memory_format=torch.channels_last)
    run_identity = {**settings.fingerprint(), "source": source_digest()}
    if "weights_path" in settings.options:
        run_identity["weights"] = file_digest(Path(settings.options["weights_path"]))
    fingerprint = run_fingerprint(run_identity, train_split.images, train_split.labels, val_split.images, val_split.labels)

    args.out.mkdir(parents=True, exist_ok=True)
    with Live(dir=str(args.live), dvcyaml=False, save_dvc_exp=False) as live:

        def log_epoch(epoch: int, record: dict[str, float]) -> None:
            live.step = epoch
            for name, value in record.items():
                live.log_metric(name, value)
            live.make_summary()

        state = fit(
            model, train, settings.unfreeze_at_epoch, to_device(train_split, device), to_device(val_split, device),
            len(classes), args.out, fingerprint, device, on_epoch=log_epoch,
        )
        live.summary["best_epoch"] = state.best_epoch
        live.summary["train_seconds"] = sum(r["epoch_seconds"] for r in state.history)
        live.make_summary()
    print(f"train@{args.model}: best epoch {state.best_epoch} of {state.epoch} ({train.monitor})")


if __name__ == "__main__":
    stage_main(main)
