"""Reports: Markdown tables and plots."""

from .markdown import fmt_mean_std, markdown_table, mean_std, write_run_report

__all__ = ["fmt_mean_std", "markdown_table", "mean_std", "write_run_report"]
