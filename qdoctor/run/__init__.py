"""Running checks: the core check (load -> gather -> diagnose -> prescribe -> Report), one target per worker
process, several targets in turns, and the report of a worker that died."""
