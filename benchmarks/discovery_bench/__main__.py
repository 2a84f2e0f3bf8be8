"""``python -m discovery_bench``: the benchmark command on its own, without the rest of the CLI."""

from discovery_bench.command import bench_command

if __name__ == "__main__":
    bench_command(prog_name="python -m discovery_bench")
