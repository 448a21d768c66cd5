"""Invented inputs in each source's exact layout, for the tests, the demo and the benchmark; never a real person's file.

``samples.statistics`` writes KOReader statistics files, ``samples.sidecars`` KOReader sidecar files and
``samples.calibre`` Calibre libraries, ``samples.kindle`` and ``samples.audible`` the Kindle and Audible parts
of Amazon's data export (a zip or its folder). Each also runs from the repository root, as
``python3 -m samples.statistics OUT ...`` and so on.
"""
