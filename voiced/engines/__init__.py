"""One module per model engine; all blocking, all run in worker threads."""

import os

# CTranslate2's OpenMP threads spin after each parallel region by default. On a
# 2-core board that spinning starves the asyncio loop (measured: 30-170 ms lag
# spikes during ASR and generation, under 6 ms with PASSIVE). Must be set before
# the OpenMP runtime starts, so here, ahead of any engine import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
