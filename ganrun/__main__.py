"""``python -m ganrun <command> ...``, as ``ganrun``: the form torchrun launches,
``torchrun --nproc_per_node=N -m ganrun train ...`` (ganrun.training.distributed)."""

import sys

from ganrun.cli import main

if __name__ == "__main__":
    sys.argv[0] = "ganrun"  # messages and Hydra's job name read the program's name
    main()
