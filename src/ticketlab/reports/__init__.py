"""Reports on finished runs of every kind: tables, plots, comparisons with their verdicts, and where
the report came from, written as report.md, report.json, report.csv and a self-contained report.html.

`load_run` reads one run directory (or `load_runs` a list, a sweep's folder expanded into its runs),
`write_report` writes the documents. The modules: `loading` (one reader per run kind), `labels` (what
tells runs apart), `origin` (version, date, command, machine), `tables` (percent tables, CSV rows,
paired comparisons), `plots`, `document` (one document rendered as Markdown and as HTML), `writer`,
`sweep` (a sweep's report).
"""
