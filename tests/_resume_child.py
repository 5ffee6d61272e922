"""Run a short training and kill the process (os._exit) right after step KILL_AT."""

import os
import sys

from gradversary.engine import Trainer, resolve_config

CFG = {
    "method": {"name": "dann"}, "model": {"name": "mlp", "hidden": [8]},
    "train": {"steps": 40, "eval_every": 10, "log_every": 5, "batch_size": 32, "progress": False,
              "seed": 11},
}


def main(run_dir: str, kill_at: int) -> None:
    def kill(info):
        if info.step == kill_at:
            os._exit(17)  # no cleanup, like a SIGKILL

    Trainer(resolve_config(CFG), run_dir=run_dir, callbacks=[kill]).fit()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
