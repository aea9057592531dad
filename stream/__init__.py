"""The Faust side: app, agent, model holder. Thin over the pure core in ``stream.pipeline``."""
