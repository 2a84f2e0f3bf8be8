"""``python -m discovery.cli``: the same as the ``discovery`` console script."""

from discovery.cli import main

main(prog_name="discovery")
