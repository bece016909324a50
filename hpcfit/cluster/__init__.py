"""SLURM support: the batch-script templates (``scripts``) and ``hpcfit submit`` (``submit``).

The engine itself knows nothing about SLURM beyond reading ``SLURM_ARRAY_TASK_*`` and ``SLURM_RESTART_COUNT``
(in ``hpcfit.cli``); everything scheduler-specific lives here and in the scripts it writes.
"""
