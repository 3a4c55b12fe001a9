"""HTML reports with plots for deploys, restore drills and game days: one self-contained file
each (plotly.js inline, nothing fetched at view time), written next to the Markdown report.
plotly is imported inside the functions that draw, so importing this package stays cheap."""
