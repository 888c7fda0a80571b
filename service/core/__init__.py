"""The service's core, below HTTP: what each task serves (`state`), starting and stopping it (`lifecycle`),
the rules of each operation (`gallery`), model upgrades (`upgrades`), kept images and the start-up gallery.

It refuses with the kinds in `errors`; `service.api` maps them to problem+json and never the other way round
(an import-linter contract says so).
"""
