"""ACRO baseline for `kura bench sdc`.

Reads the synthetic microdata written by `kura_sdc::bench` (raw little-endian arrays), runs
`ACRO.crosstab(r, c, values=v, aggfunc="mean", margins=True)` with ACRO's default thresholds
(acro/default.yaml: threshold 10, zeros disclosive, nk 2/90%, p-ratio 10%), times the call, and
writes the cells each primary check flagged, so the Rust side can compare them cell by cell.

Usage: python acro_bench.py DATA_DIR OUT.json [--no-suppress]

DATA_DIR holds meta.json ({"n": rows}), r.u32, c.u32, v.f64.
"""

import json
import logging
import os
import sys
import time
from importlib.metadata import version


def main() -> int:
    data_dir, out_path = sys.argv[1], sys.argv[2]
    suppress = "--no-suppress" not in sys.argv[3:]
    try:
        import numpy as np
        import pandas as pd
        import acro
    except ImportError as err:
        print(f"acro is not importable: {err}", file=sys.stderr)
        return 3
    # ACRO logs every table at INFO; printing 1M-cell tables would dominate the timing.
    logging.disable(logging.INFO)
    with open(os.path.join(data_dir, "meta.json"), encoding="utf-8") as fh:
        meta = json.load(fh)
    n = int(meta["n"])
    r = np.fromfile(os.path.join(data_dir, "r.u32"), dtype="<u4", count=n)
    c = np.fromfile(os.path.join(data_dir, "c.u32"), dtype="<u4", count=n)
    v = np.fromfile(os.path.join(data_dir, "v.f64"), dtype="<f8", count=n)
    df = pd.DataFrame({"r": r.astype(np.int64), "c": c.astype(np.int64), "v": v})

    session = acro.ACRO(suppress=suppress)
    start = time.perf_counter()
    table = session.crosstab(df.r, df.c, values=df.v, aggfunc="mean", margins=True)
    seconds = time.perf_counter() - start

    record = list(session.results.results.values())[-1]
    cells = record.sdc["cells"]
    names = {
        "MinimumThresholdCheck": "threshold",
        "NKCheck": "nk",
        "PPercentCheck": "p_ratio",
    }
    out = {
        "acro_version": version("acro"),
        "pandas_version": pd.__version__,
        "suppress": suppress,
        "seconds": seconds,
        "microdata_rows": n,
        "rows": [str(x) for x in record.outcome.index],
        "cols": [str(x) for x in record.outcome.columns],
        "table_shape": list(table.shape),
        "cells": {short: cells.get(long, []) for long, short in names.items()},
        "suppressed_after": int(table.isna().to_numpy().sum()),
    }
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(out, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
