"""What the shortlist loses on a trained bundle: per S, the first stage's recall of the gold codes,
the recall of the codes decoded (forced codes included), codes decoded per note, and dev MAP as
served against full decoding (both conventions), through `training.shortlist_report`. Usage:

    python benchmarks/shortlist_quality.py --model bundles/demo-d-es --lang es --codes D
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import command_line, load_average, markdown_table

from training.corpora.codiesp import locate_codiesp
from training.datasets import CorpusSpec
from training.shortlist_report import measure_shortlist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a bundle with a shortlist")
    parser.add_argument("--path", type=Path, default=None, help="CodiEsp folder")
    parser.add_argument("--lang", default="es", choices=["es", "en"])
    parser.add_argument("--codes", default="D", choices=["D", "P"])
    parser.add_argument("--split", default="dev")
    parser.add_argument("--sizes", default="64,128,256,512")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--network-alone", action="store_true", help="serve without the fusion")
    args = parser.parse_args()
    spec = CorpusSpec("codiesp", str(locate_codiesp(args.path)), lang=args.lang, codes=args.codes)
    documents = spec.load(args.split)
    sizes = [int(size) for size in args.sizes.split(",")]
    rows = measure_shortlist(
        args.model, documents, sizes, threads=args.threads, fused=not args.network_alone
    )
    table = [
        [
            str(row.size),
            f"{row.first_stage_recall:.3f}",
            f"{row.decoded_recall:.3f}",
            f"{row.mean_decoded:.0f}",
            f"{row.map:.4f}",
            f"{row.map_official:.4f}",
            f"{row.map_drop:+.4f}",
            f"{row.map_official_full - row.map_official:+.4f}",
        ]
        for row in rows
    ]
    headers = [
        "S",
        "first-stage recall@S",
        "decoded recall",
        "codes decoded / note",
        "MAP",
        "MAP (official)",
        "MAP drop vs full",
        "official drop",
    ]
    full = rows[0]
    print(f"`{command_line()}` (load {load_average()})\n")
    print(f"Full decoding: MAP {full.map_full:.4f}, official {full.map_official_full:.4f}\n")
    print(markdown_table(headers, table))


if __name__ == "__main__":
    main()
