"""Where explanations go: the live console, JSON lines, the Prometheus exporter and recordings."""
