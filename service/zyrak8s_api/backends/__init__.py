"""Where runs execute and where their records live: `local` (one machine) or `kubernetes` (ZyraRuns)."""
