"""Figures drawn from hpcfit output files (``hpcfit plot FILE``); matplotlib is imported only here."""
