"""hpcfit from Python: the functions a notebook calls (``hpcfit.run``, ``hpcfit.open``, ``hpcfit.parallel_fit``).

It sits above the registry (it runs jobs through the same engine as the command line) and below the command line.
Each public function lives in its own module here; ``hpcfit/__init__.py`` re-exports them lazily so that
``import hpcfit`` stays cheap on every rank.
"""
