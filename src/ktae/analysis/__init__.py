"""See the key tokens: per-prompt tables, HTML heat-maps and PNG figures of rollouts (``ktae analyze``).

    from ktae.analysis import load_rollouts, analyze, write_html
    analysis = analyze(load_rollouts("rollouts.jsonl"), "Qwen/Qwen2.5-Math-7B")
    write_html(analysis, "report.html")

or, in one call, ``write_report("rollouts.jsonl", tokenizer, "report.html")``.
"""
from ktae.analysis.compute import Analysis, GroupSummary, analyze, load_tokenizer
from ktae.analysis.figure import plot_rollout
from ktae.analysis.html import write_html
from ktae.analysis.report import format_group_tables, write_pngs, write_report
from ktae.analysis.rollouts import Rollout, rollout_from_record
from ktae.analysis.sources import RolloutSource, load_rollouts, load_source
from ktae.analysis.tokens import TokenPieces, token_pieces

__all__ = [
    "Analysis",
    "GroupSummary",
    "Rollout",
    "RolloutSource",
    "TokenPieces",
    "analyze",
    "format_group_tables",
    "load_rollouts",
    "load_source",
    "load_tokenizer",
    "plot_rollout",
    "rollout_from_record",
    "token_pieces",
    "write_html",
    "write_pngs",
    "write_report",
]
