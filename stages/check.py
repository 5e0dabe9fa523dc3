"""DVC stage `check`: the whole params.yaml validated, one line per problem, upstream of every finetune@ stage.

To DVC, a finetune: entry whose `from` names no model is a missing dependency (data/models/<from>/best.pt),
reported before any script of that stage runs. This stage runs first in `dvc repro`, so imgcls names
`finetune.<name>.from` instead, as `imgcls check` does. Its output holds no result: it only exists once
the params are valid, and stays the same bytes, so a valid change reruns nothing downstream.
"""

from pathlib import Path

from imgcls.commands.check import exit_on_problems
from imgcls.core.atomic import write_json
from imgcls.core.cli import stage_main, stage_parser


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--out", type=Path, required=True, help="written once params.yaml is valid (finetune@ deps)")
    args = parser.parse_args()
    exit_on_problems(args.params)
    write_json(args.out, {"params": "valid"})
    print(f"check: {args.params} is valid -> {args.out}")


if __name__ == "__main__":
    stage_main(main)
