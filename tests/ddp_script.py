"""Run by tests/test_cv_ddp.py as ``python tests/ddp_script.py OUT``: Lightning's "ddp" re-runs this script per rank."""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.cv_helpers import make_cv, score_by_hand, small_dataset  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1])
    dataset = small_dataset(n=10)
    cv = make_cv(out, dataset, batch_size=2, trainer_kwargs={"strategy": "ddp", "devices": 2, "accelerator": "cpu"})
    report = cv.run()
    rank = torch.distributed.get_rank()
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()  # the reference below scores in this process alone
    result = {"indexes": report.indexes.tolist(), "softmin": report.scores["softmin"].tolist()}
    if rank == 0:
        folds = json.loads((out / "splits.json").read_text())["folds"]
        ckpts = [out / f"fold_{f}" / "checkpoints" / "last.ckpt" for f in range(2)]
        result["expected"] = score_by_hand(dataset, folds, ckpts).scores["softmin"].tolist()
    (out / f"result_{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":  # not on import (pytest --doctest-modules imports every module)
    main()
