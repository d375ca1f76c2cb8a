"""`python -m mixer_edge.train ARGS`: the entry point torchrun (or `train --nproc`) runs in each process."""
import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
