"""Peak memory of the serving process against batch size x note length, and two large batches
at once: what a pod's memory limit must hold.

Each scenario starts a fresh `plant-icd serve` process (so its peak, VmHWM, is the scenario's
own), waits until it is ready, records its resident memory, sends the requests, and reads the
peak resident memory the kernel recorded for it. Notes are CodiEsp text repeated to the length
asked (the tokenizer sees real clinical text); the limits of the service are 32 notes of 100,000
characters per request.

Without --bundle it builds a demo-shaped bundle (the `demo` network preset, random weights,
1,767 ICD-10-CM codes from CodiEsp's training split, a BPE vocabulary of 8,000 trained on it,
max_tokens 2,048): memory depends on the shapes, not on the weights. That needs torch.

    python benchmarks/memory_service.py --out runs/memory.md
    python benchmarks/memory_service.py --token-budget 1000000000   # no per-call bound
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from _common import (  # noqa: E402
    DEFAULT_CORPUS_PATH,
    HelpFormatter,
    busy_warning,
    command_line,
    emit,
    facts_list,
    machine_facts,
    markdown_table,
    parse_int_list,
)

from training.corpora import load_corpus  # noqa: E402


def build_demo_shaped_bundle(directory: Path, corpus_path: str, max_tokens: int) -> Path:
    """A bundle with the demo network's shapes and random weights (see the module docstring)."""
    import torch

    from model.bundle import FORMAT_VERSION, BundleMetadata, package_versions, write_bundle
    from model.metadata import DEFAULT_SHORTLIST_SIZE
    from model.nn.export import export_onnx
    from model.nn.network import PlantClassifier, build_config
    from model.tokenizer import NoteTokenizer

    documents = list(load_corpus("codiesp", corpus_path, "train", lang="en", codes="D"))
    codes = sorted({code for document in documents for code in document.codes})
    tokenizer = NoteTokenizer.train((d.text for d in documents), vocab_size=8000)
    tokenizer_path = tokenizer.save(directory / "build_tokenizer.json")
    torch.manual_seed(0)
    config = build_config(vocab_size=tokenizer.vocab_size, n_codes=len(codes), top_k_export=50)
    model = PlantClassifier(config).eval()
    graph = export_onnx(model, directory / "build_model.onnx", top_k=50)
    metadata = {
        "format_version": FORMAT_VERSION,
        "kind": "plant",
        "name": "demo-shaped-random",
        "version": "0.0.0-memory",
        "created_at": "2026-01-01T00:00:00Z",
        "config": json.loads(json.dumps(config.to_dict())),
        "codes": [{"code": code, "description": f"code {code}"} for code in codes],
        "code_system": "icd10cm",
        "thresholds": {"global_threshold": 0.5, "per_code": [0.5] * len(codes), "min_positives": 2},
        "max_tokens": max_tokens,
        "top_k_export": 50,
        "train_code_counts": [1] * len(codes),
        "corpus": {
            "name": "codiesp",
            "split": "train",
            "lang": "en",
            "codes": "D",
            "fingerprint": "0" * 64,
        },
        "dev_metrics": {},
        "training": {"stages": ["random"], "seconds": {}, "seed": 0},
        "package_versions": package_versions(["numpy", "onnxruntime", "tokenizers", "torch"]),
        # The network's first stage is on by default: two-stage decoding at the default S.
        "shortlist": {"size": DEFAULT_SHORTLIST_SIZE, "min_train_notes": 0},
    }
    bundle = directory / "bundle"
    write_bundle(bundle, BundleMetadata(**metadata), graph, tokenizer_path)
    return bundle


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def _post(url: str, body: dict[str, object], timeout: float) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def run_scenario(
    bundle: Path,
    environment: dict[str, str],
    batches: list[list[str]],
    timeout: float,
) -> tuple[float, float, float, list[int]]:
    """(resident MiB when ready, peak MiB, seconds, statuses) for `batches` sent at once."""
    with tempfile.TemporaryDirectory() as work:
        database = f"sqlite:///{work}/audit.db"
        env = {
            **os.environ,
            **environment,
            "PLANT_ICD_DATABASE_URL": database,
            "PLANT_ICD_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(REPO),
        }
        subprocess.run(
            [sys.executable, "-m", "service.cli", "db", "upgrade"],
            env=env,
            check=True,
            capture_output=True,
            cwd=REPO,
        )
        port = _free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.cli",
                "serve",
                "--port",
                str(port),
                "--bundle",
                str(bundle),
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    with urllib.request.urlopen(base + "/readyz", timeout=2) as ready:
                        if ready.status == 200:
                            break
                except OSError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start: {server.stderr.read()!r}")  # type: ignore[union-attr]
                time.sleep(0.2)
            idle = _memory_kib(server.pid, "VmRSS") / 1024
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(len(batches)) as pool:
                statuses = list(
                    pool.map(
                        lambda notes: _post(
                            base + "/v1/predictions/batch",
                            {"notes": [{"text": text, "top_k": 10} for text in notes]},
                            timeout,
                        ),
                        batches,
                    )
                )
            seconds = time.monotonic() - started
            peak = _memory_kib(server.pid, "VmHWM") / 1024
        finally:
            server.terminate()
            server.wait(timeout=30)
    return idle, peak, seconds, statuses


def note_of(length: int, source: str) -> str:
    return (source * (length // max(1, len(source)) + 1))[:length]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None, help="unset: build a demo-shaped one")
    parser.add_argument("--corpus-path", default=DEFAULT_CORPUS_PATH)
    parser.add_argument("--max-tokens", type=int, default=2048, help="of the built bundle")
    parser.add_argument("--batch-sizes", type=parse_int_list, default=[1, 8, 32])
    parser.add_argument("--note-chars", type=parse_int_list, default=[1000, 10000, 100000])
    parser.add_argument("--concurrent", type=int, default=2, help="large batches sent at once")
    parser.add_argument(
        "--token-budget",
        type=int,
        default=None,
        help="PLANT_ICD_INFERENCE_TOKEN_BUDGET (unset: the service default)",
    )
    parser.add_argument("--threads", type=int, default=2, help="PLANT_ICD_INFERENCE_THREADS")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="PLANT_ICD_MAX_CONCURRENT_INFERENCES"
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    facts = machine_facts(["onnxruntime", "tokenizers", "numpy"])
    source = " ".join(
        d.text for d in load_corpus("codiesp", args.corpus_path, "dev", lang="en", codes="D")
    )
    environment = {
        "PLANT_ICD_INFERENCE_THREADS": str(args.threads),
        "PLANT_ICD_MAX_CONCURRENT_INFERENCES": str(args.concurrency),
        "PLANT_ICD_MAX_NOTE_CHARS": str(max(args.note_chars)),
        "PLANT_ICD_MAX_BATCH_NOTES": str(max(args.batch_sizes)),
    }
    if args.token_budget is not None:
        environment["PLANT_ICD_INFERENCE_TOKEN_BUDGET"] = str(args.token_budget)
    with tempfile.TemporaryDirectory() as build:
        bundle = args.bundle or build_demo_shaped_bundle(
            Path(build), args.corpus_path, args.max_tokens
        )
        scenarios = [
            (batch, chars, 1) for batch in args.batch_sizes for chars in args.note_chars
        ] + [(max(args.batch_sizes), max(args.note_chars), args.concurrent)]
        rows = []
        for batch, chars, at_once in scenarios:
            notes = [note_of(chars, source[i * 997 :]) for i in range(batch)]
            idle, peak, seconds, statuses = run_scenario(
                bundle, environment, [notes] * at_once, args.timeout
            )
            print(f"{batch} x {chars} x {at_once}: peak {peak:.0f} MiB", file=sys.stderr)
            rows.append(
                [
                    f"{at_once} x ({batch} notes x {chars:,} chars)",
                    f"{idle:.0f}",
                    f"{peak:.0f}",
                    f"{seconds:.1f}",
                    ",".join(str(status) for status in statuses),
                ]
            )
    budget = args.token_budget if args.token_budget is not None else "service default"
    report = "\n\n".join(
        part
        for part in (
            "## Serving memory",
            f"`{command_line()}`",
            busy_warning(),
            facts_list(
                [
                    *facts,
                    ("bundle", str(args.bundle) if args.bundle else "demo-shaped, random weights"),
                    ("inference token budget", str(budget)),
                    ("threads x concurrent inferences", f"{args.threads} x {args.concurrency}"),
                ]
            ),
            markdown_table(
                ["requests at once", "ready RSS MiB", "peak RSS MiB", "seconds", "status"], rows
            ),
        )
        if part
    )
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
