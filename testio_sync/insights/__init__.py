"""The read side: answers from the local mirror (the quality report, its filters, its
breakdowns for charts, and its renderings: text, HTML with charts, CSV, JSON, Markdown;
analytics: the metrics registry, its compiler and the SQL dialect seam)."""
