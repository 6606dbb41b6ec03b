"""Latency, throughput, memory and efficiency of model artifacts, measured against PyTorch eager FP32.

``run`` times the artifacts in interleaved rounds, ``probes`` measures the machine (GEMM rate, peak RSS),
``report`` holds the records and renders them. The names below stay importable from ``fcn_deploy.bench``.
"""

from __future__ import annotations

from fcn_deploy.bench.probes import (
    GemmProbe,
    gemm_worker,
    machine_info,
    peak_rss_mb,
    rss_probe,
    rss_worker,
)
from fcn_deploy.bench.report import (
    BASELINE_LABEL,
    TABLE_COLUMNS,
    ArtifactResult,
    BenchConfig,
    BenchReport,
    GemmResult,
    ShapeResult,
    summary_lines,
    table_rows,
)
from fcn_deploy.bench.run import artifact_label, find_source_checkpoint, run_bench

__all__ = ["BASELINE_LABEL", "TABLE_COLUMNS", "ArtifactResult", "BenchConfig", "BenchReport", "GemmProbe",
           "GemmResult", "ShapeResult", "artifact_label", "find_source_checkpoint", "gemm_worker", "machine_info",
           "peak_rss_mb", "rss_probe", "rss_worker", "run_bench", "summary_lines", "table_rows"]
