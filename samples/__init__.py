"""Invented inputs in each source's exact layout, for the tests, the demo and the benchmark; never a real person's file.

``samples.statistics`` writes KOReader statistics files, ``samples.sidecars`` KOReader sidecar files and
``samples.calibre`` Calibre libraries. Each also runs from the repository root, as
``python3 -m samples.statistics OUT ...`` and so on.
"""
