"""The engine: the job contract (``job``) and the one life cycle every job runs through (``run``).

It is handed a job registry by its caller and imports no job.
"""
