"""From records to explanations: the correlator joins records into incidents, the rules explain
each incident with the knowledge tables, and insights and storms add what no single event shows.
Pure logic over tracer.model, runs without root."""
