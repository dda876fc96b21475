"""Tables, figures and files for people to read."""

from crop.report.files import write_text_atomic
from crop.report.tables import Table, all_tables, performance, render_markdown, summary_table

__all__ = ["Table", "all_tables", "performance", "render_markdown", "summary_table", "write_text_atomic"]
