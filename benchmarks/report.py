"""Regenerate docs/benchmarks.md, docs/benchmarks.png, docs/benchmarks-peers.png and docs/benchmarks.json.

    .venv/bin/python benchmarks/report.py            # full run (about 15 minutes on 2 cores)
    .venv/bin/python benchmarks/report.py --quick    # fewer sizes and iterations (a few minutes)
    .venv/bin/python benchmarks/report.py --models fcn.pt fcn.onnx fcn.fp16.onnx fcn.int8-cpu.onnx

Without --models it benchmarks a random-weight fcn32s and its FP32, FP16 and CPU INT8 ONNX, made once in a
temporary work folder (speed does not depend on the weights). ``--peer-images DIR`` measures the peers' argmax
agreement on those images (with random weights the agreement says little; pass a trained model for it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline  # noqa: E402
from bench_artifacts import DEFAULT_WORKDIR, artifacts_from, make_artifacts, say  # noqa: E402
from plot import bar_chart, line_chart  # noqa: E402

from fcn_deploy.bench import (  # noqa: E402
    TABLE_COLUMNS,
    BenchConfig,
    BenchReport,
    run_bench,
    summary_lines,
    table_rows,
)
from fcn_deploy.bench.peers import (  # noqa: E402
    OWN_PATHS,
    PEER_COLUMNS,
    PeerConfig,
    PeerReport,
    peer_rows,
    peer_summary_lines,
    run_peers,
)
from fcn_deploy.fileio import write_text_atomic  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"
MAIN_SIZE = (320, 480)
SWEEP_SIDES = (256, 512, 1024, 2048)
GIB = 1024.0


def _find(report: BenchReport, label: str, batch: int, hw: tuple[int, int]):
    """The ShapeResult of artifact ``label`` at batch × hw (None when absent or skipped)."""
    for artifact in report.artifacts:
        if artifact.label == label:
            for shape in artifact.shapes:
                if (shape.batch, shape.height, shape.width) == (batch, *hw) and not shape.skipped:
                    return shape
    return None


def targets(main: BenchReport, pipe: dict) -> list[tuple[str, str, bool | None]]:
    """(target, measured figure, met?) for every performance target of the project."""
    rows: list[tuple[str, str, bool | None]] = []
    fp32 = _find(main, "onnxruntime-fp32", 1, MAIN_SIZE)
    int8 = _find(main, "onnxruntime-int8-cpu", 1, MAIN_SIZE)
    if fp32 is not None:
        rows.append(("ONNX Runtime FP32 ≥ 90 % of the GEMM rate (320×480, batch 1)",
                     f"{100 * fp32.gemm_fraction:.0f} % ({fp32.gflops_per_s:.0f} of {main.gemm.gflops_median:.0f} GFLOP/s)",
                     fp32.gemm_fraction >= 0.9))
        if fp32.speedup_vs_eager is not None:
            rows.append(("ONNX Runtime FP32 ≥ 1.8× PyTorch eager FP32", f"{fp32.speedup_vs_eager:.2f}×",
                         fp32.speedup_vs_eager >= 1.8))
    if fp32 is not None and int8 is not None and fp32.speedup_vs_eager and int8.speedup_vs_eager:
        ratio = int8.speedup_vs_eager / fp32.speedup_vs_eager
        rows.append(("INT8 (--target cpu) ≥ 2.0× ONNX Runtime FP32", f"{ratio:.2f}×", ratio >= 2.0))
    voc = pipe["voc"]
    rows.append(("infer pipeline efficiency ≥ 93 % on VOC-sized images, model load included",
                 f"{100 * voc['efficiency']:.0f} % with the load, {100 * voc['efficiency_steady']:.0f} % without it "
                 f"({voc['images']} images)", voc["efficiency"] >= 0.93))
    default = [p for p in pipe["scaling"] if p["overlap"] == pipe["scaling"][0]["overlap"]]
    largest = max(default, key=lambda p: p["side"])
    one_mp = next((p for p in default if p["side"] == 1024), None)
    if largest["side"] >= 8192:
        model_pixels = largest["tiles"] * largest["tile_hw"][0] * largest["tile_hw"][1] / largest["side"] ** 2
        rows.append((f"{largest['side']}×{largest['side']} at the default options: the model processes ≤ 1.3× "
                     f"the image's pixels", f"{model_pixels:.3f}× ({largest['tiles']} tiles of "
                     f"{largest['tile_hw'][0]}×{largest['tile_hw'][1]})", model_pixels <= 1.3))
        if one_mp is not None:
            ratio = largest["s_per_megapixel"] / one_mp["s_per_megapixel"]
            rows.append((f"time per image MP at {largest['side']}² within 1.35× of a 1-MP whole pass",
                         f"{ratio:.2f}× ({largest['s_per_megapixel']:.2f} against {one_mp['s_per_megapixel']:.2f} s/MP)",
                         ratio <= 1.35))
        rows.append((f"{largest['side']}×{largest['side']} within 1.5 GiB peak RSS",
                     f"{largest['peak_rss_mb'] / GIB:.2f} GiB", largest["peak_rss_mb"] <= 1.5 * GIB))
    return rows


def peer_targets(peers: dict) -> list[tuple[str, str, bool | None]]:
    """(target, measured figure, met?) for the peer comparison: fcn-deploy's fastest paths against the others."""
    rows_by_name = {r["name"]: r for r in peers["rows"] if r.get("median_ms")}
    ours = [rows_by_name[n] for n in OWN_PATHS["fp32"] if n in rows_by_name]
    if not ours:
        return []
    fastest = max(ours, key=lambda r: r["speedup_vs_eager"] or 0.0)
    others = [r for r in rows_by_name.values() if r["precision"] == "fp32" and r["name"] not in OWN_PATHS["fp32"]]
    # judged on the median of per-round speed-ups over eager (the interleaved rounds share the machine's load)
    beaten = [r["name"] for r in others if (r["speedup_vs_eager"] or 0) > fastest["speedup_vs_eager"] * 1.05]
    rows = [(f"fastest fcn-deploy FP32 path ({fastest['name']}) at least as fast as every FP32 peer "
             "(per-round speed-up over eager, 5 % noise allowance)",
             f"{fastest['speedup_vs_eager']:.2f}× eager against "
             + ", ".join(f"{r['name']} {r['speedup_vs_eager']:.2f}×" for r in others), not beaten)]
    best = max((m for m in peers["matmul"] if m["precision"] == "fp32" and m["gflops"]), key=lambda m: m["gflops"])
    rows.append(("fastest FP32 path ≥ 85 % of the best FP32 matrix-multiply rate",
                 f"{100 * fastest['matmul_fraction']:.0f} % ({fastest['gflops_per_s']:.0f} of {best['gflops']:.0f} "
                 f"GFLOP/s, {best['library']})", fastest["matmul_fraction"] >= 0.85))
    for precision, factor, agreement in (("bf16", 1.6, 0.995), ("int8", 2.5, 0.99)):
        own = [rows_by_name[n] for n in OWN_PATHS[precision] if n in rows_by_name]
        if not own:
            rows.append((f"{precision.upper()} ≥ {factor}× the fastest FP32 path", "not measured here", None))
            continue
        path = max(own, key=lambda r: r["speedup_vs_eager"])
        ratio = path["speedup_vs_eager"] / fastest["speedup_vs_eager"]
        shown = "-" if path["agreement"] is None else f"{100 * path['agreement']:.2f} %"
        rows.append((f"{precision.upper()} ({path['name']}) ≥ {factor}× the fastest FP32 path with ≥ "
                     f"{100 * agreement:g} % agreement", f"{ratio:.2f}×, agreement {shown}",
                     ratio >= factor and (path["agreement"] or 0) >= agreement))
    return rows


def _peer_report(peers: dict) -> PeerReport:
    return PeerReport.from_dict(peers)


def _markdown_table(header: tuple[str, ...], rows) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def sweep_series(sweep: BenchReport, pipe: dict) -> dict[str, list[tuple[float, float]]]:
    """ms per megapixel by image megapixels: one line per artifact, plus the infer pipeline lines."""
    series: dict[str, list[tuple[float, float]]] = {}
    for artifact in sweep.artifacts:
        points = [(s.height * s.width / 1e6, s.ms_per_megapixel) for s in artifact.shapes if not s.skipped]
        series[f"model {artifact.label}"] = points
    for overlap in dict.fromkeys(p["overlap"] for p in pipe["scaling"]):
        points = [(p["megapixels"], 1e3 * p["s_per_megapixel"]) for p in pipe["scaling"] if p["overlap"] == overlap]
        series[f"infer FP32, overlap {overlap}"] = points
    return series


def markdown(main: BenchReport, sweep: BenchReport, pipe: dict, command: str, peers: dict | None = None) -> str:
    """The whole docs/benchmarks.md."""
    machine = dict(main.machine)
    lines = [
        "# Benchmarks", "",
        f"Measured {main.created} on {machine.get('cpu')} ({machine.get('logical_cpus')} logical CPUs, "
        f"{machine.get('os')}), Python {machine.get('python')}, torch {machine.get('torch')}, "
        f"onnxruntime {machine.get('onnxruntime-gpu') or machine.get('onnxruntime')}, onnx {machine.get('onnx')}, "
        f"numpy {machine.get('numpy')}. Regenerate everything on this page (tables, plot, raw JSON) with:", "",
        "```bash", command, "```", "",
        "The machine is shared and noisy: every artifact runs in interleaved rounds (round r times each "
        "artifact in turn, starting at a rotating position), speed ratios are medians of per-round ratios, "
        "and the GEMM reference is sampled once per round in the same run. Absolute times move with the "
        "machine's load; the ratios move much less. " + (
            "The models are the ones named in the command (speed does not depend on the weights; the agreement "
            "figures do)." if "--models" in command else
            "The models have random weights (speed does not depend on them)."), "",
        "## Targets", "",
    ]
    lines += _markdown_table(("target", "measured", "met"),
                             [(t, m, "yes" if ok else ("no" if ok is not None else "-"))
                              for t, m, ok in targets(main, pipe) + (peer_targets(peers) if peers else [])])
    lines += ["", f"## Latency at {MAIN_SIZE[0]}×{MAIN_SIZE[1]}", ""]
    lines += _markdown_table(TABLE_COLUMNS, table_rows(main))
    lines += [""] + [f"- {line}" for line in summary_lines(main)]
    lines += ["- peak RSS: a fresh process per artifact loads it and runs each shape once "
              "(includes the Python interpreter and runtime libraries; "
              + ", ".join(f"{Path(a.path).name}: {a.rss_before_load_mb:.0f} MiB before loading"
                          for a in main.artifacts if a.rss_before_load_mb) + ")",
              "- FLOPs are the architecture's, analytic (convolutions and transposed convolutions, 2×MACs, "
              "counted on the module for the given input size): the same figure for every form of the graph."]
    if peers:
        lines += ["", f"## Peers at {MAIN_SIZE[0]}×{MAIN_SIZE[1]}, batch 1", "",
                  "The same input in every peer's own format, interleaved rounds; agreement is the argmax agreement "
                  "with PyTorch eager FP32 (" + (f"on the images of `{peers['config']['images']}`, centre crops"
                  if peers["config"].get("images") else "on the random timing input") + "); '% best matmul' is the "
                  "peer's analytic GFLOP/s over the best matrix-multiply rate of its precision measured in the "
                  "same run; peak RSS is a fresh process per peer.", "",
                  "![peers](benchmarks-peers.png)", ""]
        lines += _markdown_table(PEER_COLUMNS, peer_rows(_peer_report(peers)))
        lines += [""] + [f"- {line}" for line in peer_summary_lines(_peer_report(peers))]
    lines += ["", "## Latency per megapixel by image size", "", "![latency per megapixel](benchmarks.png)", ""]
    sides = sorted({(s.height, s.width) for a in sweep.artifacts for s in a.shapes})
    header = ("artifact", *(f"{h}×{w} ms/MP" for h, w in sides))
    rows = []
    for artifact in sweep.artifacts:
        by_hw = {(s.height, s.width): s for s in artifact.shapes}
        rows.append((artifact.label, *(f"{by_hw[hw].ms_per_megapixel:.0f}" if not by_hw[hw].skipped else "-"
                                       for hw in sides)))
    lines += _markdown_table(header, rows)
    voc = pipe["voc"]
    lines += [
        "", "## The infer pipeline", "",
        f"`infer_folder` on {voc['images']} VOC-sized images ({voc['source']}, sizes "
        f"{', '.join(f'{h}×{w}' for h, w in voc['image_sizes'])}) against the bare backend on the padded "
        f"input ({voc.get('model_output', 'logits')} output, as whole-mode inference asks) for as many images, {voc['rounds']} interleaved rounds, model `{Path(pipe['model']).name}` "
        f"(load average {pipe['load_average_start']} before, {pipe['load_average_end']} after the pipeline runs):", "",
    ]
    lines += _markdown_table(
        ("pipeline s", "model load s", "bare model s", "images/s", "images/s without load", "efficiency",
         "efficiency without load"),
        [(f"{voc['pipeline_s_median']:.2f}", f"{voc['load_s_median']:.2f}", f"{voc['model_s_median']:.2f}",
          f"{voc['images_per_s']:.2f}", f"{voc['images_per_s_steady']:.2f}", f"{100 * voc['efficiency']:.0f} %",
          f"{100 * voc['efficiency_steady']:.0f} %")],
    )
    lines += ["", "Scaling with image size (each size in a fresh process; enough copies of one synthetic image "
              "to total at least 4 megapixels; times exclude the model load; 'model MP' counts the pixels the "
              "model processes: padding in whole mode, overlapping tiles in slide mode):", ""]
    lines += _markdown_table(
        ("image", "MP", "overlap", "mode", "tiles", "s/MP", "s per model MP", "peak RSS MiB"),
        [(f"{p['side']}×{p['side']}", f"{p['megapixels']:.2f}", p["overlap"], p["mode"], p["tiles"],
          f"{p['s_per_megapixel']:.2f}", f"{p['s_per_model_megapixel']:.2f}", f"{p['peak_rss_mb']:.0f}")
         for p in pipe["scaling"]],
    )
    lines += ["", "## What limits the figures", "", *LIMITS, ""]
    return "\n".join(lines)


LIMITS = [
    "See the notes written with the last full run below; they are kept by hand because they interpret the "
    "numbers above.",
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run bench + pipeline and rewrite docs/benchmarks.*")
    parser.add_argument("--models", nargs="+", help="checkpoint and its FP32 (FP16, INT8) ONNX files")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.add_argument("--quick", action="store_true", help="fewer iterations and sizes")
    parser.add_argument("--docs", default=str(DOCS), help="where to write benchmarks.md/.png/.json")
    parser.add_argument("--peer-images", help="a folder of images for the peers' argmax agreement")
    parser.add_argument("--skip-peers", action="store_true", help="leave the peer comparison out")
    parser.add_argument("--render-only", action="store_true",
                        help="re-render benchmarks.md and the plot from the saved benchmarks.json (no measuring)")
    args = parser.parse_args(argv)
    docs = Path(args.docs)
    if args.render_only:
        data = json.loads((docs / "benchmarks.json").read_text(encoding="utf-8"))
        render(docs, BenchReport.from_dict(data["bench"]), BenchReport.from_dict(data["sweep"]), data["pipeline"],
               data.get("command", ".venv/bin/python benchmarks/report.py"), data.get("peers"))
        return
    artifacts = artifacts_from(args.models) if args.models else make_artifacts(Path(args.workdir))
    models = artifacts.models()
    say("== bench at 320x480, batches 1 and 4")
    main_report = run_bench(models, BenchConfig(
        sizes=(MAIN_SIZE,), batches=(1, 4), warmup=2, iters=6 if args.quick else 20, rounds=3 if args.quick else 5))
    sides = SWEEP_SIDES[:3] if args.quick else SWEEP_SIDES
    say("== bench size sweep")
    sweep = run_bench(models, BenchConfig(sizes=tuple((s, s) for s in sides), warmup=1, iters=3, rounds=3,
                                          measure_rss=False))
    peers = None
    if not args.skip_peers:
        say("== peers at 320x480, batch 1")
        peers = run_peers(PeerConfig(
            checkpoint=artifacts.checkpoint, onnx=artifacts.fp32, int8_onnx=artifacts.int8_cpu, size=MAIN_SIZE,
            iters=6 if args.quick else 24, rounds=3 if args.quick else 8,
            images=Path(args.peer_images) if args.peer_images else None)).to_dict()
    say("== infer pipeline")
    pipe = pipeline.run(pipeline.build_parser().parse_args(
        ["--model", str(artifacts.fp32), "--device", "cpu"] + (["--quick", "--images", "8", "--rounds", "1"]
                                                                if args.quick else [])))
    command = ".venv/bin/python benchmarks/report.py" + (" --quick" if args.quick else "")
    if args.models:  # file names only: no machine paths in the docs
        command += " --models " + " ".join(Path(m).name for m in args.models)
    if args.peer_images:
        command += f" --peer-images {Path(args.peer_images).name}"
    data = portable({"bench": main_report.to_dict(), "sweep": sweep.to_dict(), "pipeline": pipe, "command": command,
                     "peers": peers})
    write_text_atomic(docs / "benchmarks.json", json.dumps(data, indent=2) + "\n")
    render(docs, main_report, sweep, pipe, command, data["peers"])


def render(docs: Path, main_report: BenchReport, sweep: BenchReport, pipe: dict, command: str,
           peers: dict | None = None) -> None:
    """Write the plots and benchmarks.md (with the hand-written notes of benchmarks-notes.md, if any)."""
    line_chart(sweep_series(sweep, pipe), docs / "benchmarks.png",
               "Latency per megapixel by image size (lower is better)", "image size (megapixels)", "ms per megapixel (log scale)")
    if peers:
        bars = [(r["name"], r["images_per_s"]) for r in peers["rows"] if r.get("images_per_s")]
        bar_chart(bars, docs / "benchmarks-peers.png", f"Peers at {MAIN_SIZE[0]}x{MAIN_SIZE[1]}, batch 1 (higher is better)",
                  "images per second (median latency)")
    notes_path = docs / "benchmarks-notes.md"
    text = markdown(main_report, sweep, pipe, command, peers)
    if notes_path.is_file():
        text = text.replace("\n".join(LIMITS), notes_path.read_text(encoding="utf-8").strip())
    write_text_atomic(docs / "benchmarks.md", text + "\n")
    say(f"wrote {docs / 'benchmarks.md'} and benchmarks.png")


def portable(data: dict) -> dict:
    """The saved data with artifact paths reduced to file names (no machine paths in the docs)."""
    for report in (data["bench"], data["sweep"]):
        for artifact in report["artifacts"]:
            artifact["path"] = Path(artifact["path"]).name
        if report["baseline"]:
            report["baseline"] = Path(report["baseline"]).name
    data["pipeline"]["model"] = Path(data["pipeline"]["model"]).name
    if data.get("peers"):
        config = data["peers"]["config"]
        for key in ("checkpoint", "onnx", "int8_onnx", "images"):
            if config.get(key):
                config[key] = Path(config[key]).name
    return data


if __name__ == "__main__":
    main()
