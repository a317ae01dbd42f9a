"""The CPU a benchmark ran on, for the first line of the bench tables (bench_temporal_table.py,
bench_extract_table.py): a speed figure must name its machine.

What it does: `describe()` reads /proc/cpuinfo and returns e.g.
"Intel(R) Xeon(R) Processor (2 logical CPUs; AVX2, AVX-512F, AVX-512 VNNI)": the model name, the
number of logical CPUs and the vector extensions among VECTOR_FLAGS that the CPU reports ("no
AVX" when none; "unknown CPU" without /proc/cpuinfo).

What it does not: measure anything, or look at GPUs. Python 3 standard library only.
"""

# /proc/cpuinfo flag -> name shown, in the order shown.
VECTOR_FLAGS = [
    ("avx2", "AVX2"),
    ("fma", "FMA"),
    ("avx512f", "AVX-512F"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx512_bf16", "AVX-512 BF16"),
    ("amx_tile", "AMX"),
]


def describe(path="/proc/cpuinfo"):
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return "unknown CPU"
    names = [l.split(":", 1)[1].strip() for l in lines if l.startswith("model name")]
    flags = next((l.split(":", 1)[1].split() for l in lines if l.startswith("flags")), [])
    if not names:
        return "unknown CPU"
    vector = [shown for flag, shown in VECTOR_FLAGS if flag in flags] or ["no AVX"]
    return f"{names[0]} ({len(names)} logical CPUs; {', '.join(vector)})"


if __name__ == "__main__":
    print(describe())
