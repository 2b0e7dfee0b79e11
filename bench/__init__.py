"""lanchat benchmarks: run inside the namespace lab (tests/lab.py), never on the real network.

`python -m bench.bench_messaging [--quick] [--json PATH]`; see bench/README.md.
"""
