"""Parity of any artifact with its PyTorch reference (``run``, ``report``) and the precision gate (``gate``)."""

from __future__ import annotations

from fcn_deploy.parity.report import ImageParity, ParityReport, render_markdown
from fcn_deploy.parity.run import (
           REPORT_SUFFIXES,
           ParityConfig,
           report_paths,
           run_parity,
)

__all__ = ["REPORT_SUFFIXES", "ImageParity", "ParityConfig", "ParityReport", "render_markdown", "report_paths",
           "run_parity"]
